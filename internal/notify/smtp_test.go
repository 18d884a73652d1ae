package notify

import (
	"bytes"
	"cmp"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"flag"
	"io"
	"math/big"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// mailbox is a test SMTP server's record of what it accepted.
type mailbox struct {
	mu        sync.Mutex
	delivered []delivery
	logins    []string
	tls       []bool // per delivery: was the session encrypted
}

type delivery struct {
	from, to string
	data     []byte
}

func (mb *mailbox) deliveries() []delivery {
	mb.mu.Lock()
	defer mb.mu.Unlock()
	return append([]delivery(nil), mb.delivered...)
}

// session answers by recipient local part: "full" gets 550, "busy" 451,
// "spam" is refused at the end of DATA with 554; anyone else is accepted.
type session struct {
	mb       *mailbox
	conn     *smtp.Conn
	from, to string
}

func (s *session) Reset()        { s.from, s.to = "", "" }
func (s *session) Logout() error { return nil }

func (s *session) Mail(from string, _ *smtp.MailOptions) error {
	s.from = from
	return nil
}

func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	switch strings.Split(to, "@")[0] {
	case "full":
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 2, 2}, Message: "Mailbox full"}
	case "busy":
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Try again later"}
	}
	s.to = to
	return nil
}

func (s *session) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if strings.HasPrefix(s.to, "spam@") {
		return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "Rejected"}
	}
	_, isTLS := s.conn.TLSConnectionState()
	s.mb.mu.Lock()
	defer s.mb.mu.Unlock()
	s.mb.delivered = append(s.mb.delivered, delivery{from: s.from, to: s.to, data: data})
	s.mb.tls = append(s.mb.tls, isTLS)
	return nil
}

func (s *session) AuthMechanisms() []string { return []string{sasl.Plain} }

func (s *session) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, username, password string) error {
		if username != "tend" || password != "pw-right" {
			return smtp.ErrAuthFailed
		}
		s.mb.mu.Lock()
		s.mb.logins = append(s.mb.logins, username)
		s.mb.mu.Unlock()
		return nil
	}), nil
}

// startSMTPServer runs a go-smtp server on a free port. With tlsConfig it
// offers STARTTLS.
func startSMTPServer(t *testing.T, tlsConfig *tls.Config) (string, *mailbox) {
	t.Helper()
	mb := &mailbox{}
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &session{mb: mb, conn: c}, nil
	}))
	srv.Domain = "mx.test"
	srv.AllowInsecureAuth = true
	srv.TLSConfig = tlsConfig
	srv.ReadTimeout = 10 * time.Second
	srv.WriteTimeout = 10 * time.Second
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return l.Addr().String(), mb
}

func TestSMTPDelivers(t *testing.T) {
	addr, mb := startSMTPServer(t, nil)
	s := &SMTP{Addr: addr, From: "Tend Alarms <alarms@tend.example>", HelloName: "tend.example", Now: func() time.Time { return testNow }}
	m := testMessage()
	m.Subject = "Priorité haute : SpO2 basse, chambre 12"

	receipt, err := s.Send(context.Background(), Recipient{Kind: "email", Address: "nurse@ward.example"}, m)
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	if !receipt.At.Equal(testNow) || receipt.Detail != "250 2.0.0 OK: queued" {
		t.Errorf("receipt = %+v", receipt)
	}

	got := mb.deliveries()
	if len(got) != 1 {
		t.Fatalf("server accepted %d messages, want 1", len(got))
	}
	d := got[0]
	if d.from != "alarms@tend.example" || d.to != "nurse@ward.example" {
		t.Errorf("envelope = %q → %q", d.from, d.to)
	}
	msg, err := mail.ReadMessage(bytes.NewReader(d.data))
	if err != nil {
		t.Fatalf("received message does not parse: %v\n%s", err, d.data)
	}
	subject, err := new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject"))
	if err != nil {
		t.Fatalf("Subject %q: %v", msg.Header.Get("Subject"), err)
	}
	date, err := msg.Header.Date()
	if err != nil {
		t.Fatalf("Date: %v", err)
	}
	wantHeaders := map[string]string{
		"From":                      `"Tend Alarms" <alarms@tend.example>`,
		"To":                        "<nurse@ward.example>",
		"Message-Id":                "<tend.outbox-17@tend.example>",
		"Mime-Version":              "1.0",
		"Content-Type":              "text/plain; charset=utf-8",
		"Content-Transfer-Encoding": "quoted-printable",
		"X-Tend-Idempotency-Key":    "outbox-17",
		"X-Tend-Event":              "alarm.raised",
	}
	for name, want := range wantHeaders {
		if got := msg.Header.Get(name); got != want {
			t.Errorf("%s: %q, want %q", name, got, want)
		}
	}
	if subject != m.Subject {
		t.Errorf("Subject decodes to %q, want %q", subject, m.Subject)
	}
	if !strings.HasPrefix(msg.Header.Get("Subject"), "=?utf-8?q?") {
		t.Errorf("non-ASCII Subject is not RFC 2047 encoded: %q", msg.Header.Get("Subject"))
	}
	if !date.Equal(m.Created) {
		t.Errorf("Date = %v, want the message's Created %v", date, m.Created)
	}
	body, err := io.ReadAll(quotedprintable.NewReader(msg.Body))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(body), "\"priority\": \"high\",") {
		t.Errorf("body is not the pretty-printed alarm:\n%s", body)
	}

	// A retry is the same e-mail: same Message-ID, Date and body.
	m.Attempt = 2
	if _, err := s.Send(context.Background(), Recipient{Kind: "email", Address: "nurse@ward.example"}, m); err != nil {
		t.Fatal(err)
	}
	if got := mb.deliveries(); len(got) != 2 || !bytes.Equal(got[0].data, got[1].data) {
		t.Errorf("the retried e-mail differs from the first:\n%s\n----\n%s", got[0].data, got[len(got)-1].data)
	}
}

func TestSMTPReplyClasses(t *testing.T) {
	addr, mb := startSMTPServer(t, nil)
	s := &SMTP{Addr: addr, From: "alarms@tend.example", Now: func() time.Time { return testNow }}
	tests := []struct {
		to            string
		wantPermanent bool
		wantText      string
	}{
		{"full@ward.example", true, `550 "5.2.2 Mailbox full"`},
		{"busy@ward.example", false, `451 "4.3.0 Try again later"`},
		{"spam@ward.example", true, `554 "5.7.1 Rejected"`},
	}
	for _, tt := range tests {
		t.Run(tt.to, func(t *testing.T) {
			_, err := s.Send(context.Background(), Recipient{Kind: "email", Address: tt.to}, testMessage())
			if err == nil {
				t.Fatal("Send succeeded")
			}
			if IsPermanent(err) != tt.wantPermanent {
				t.Errorf("IsPermanent(%v) = %v, want %v", err, IsPermanent(err), tt.wantPermanent)
			}
			if !strings.Contains(err.Error(), tt.wantText) {
				t.Errorf("error %q does not contain %q", err, tt.wantText)
			}
		})
	}
	if n := len(mb.deliveries()); n != 0 {
		t.Errorf("server accepted %d messages, want none", n)
	}
}

func TestSMTPRefusesInjection(t *testing.T) {
	addr, mb := startSMTPServer(t, nil)
	tests := []struct {
		name string
		from string
		to   string
		m    func(*Message)
	}{
		{name: "CRLF in recipient", to: "nurse@ward.example\r\nBcc: all@ward.example"},
		{name: "LF in recipient", to: "nurse@ward.example\nBcc: all@ward.example"},
		{name: "CR in recipient", to: "nurse@ward.example\rBcc: all@ward.example"},
		{name: "CRLF in sender", from: "alarms@tend.example\r\nBcc: all@ward.example"},
		{name: "CRLF in subject", m: func(m *Message) { m.Subject = "SpO2 low\r\nBcc: all@ward.example" }},
		{name: "LF in subject", m: func(m *Message) { m.Subject = "SpO2 low\nBcc: all@ward.example" }},
		{name: "control character in subject", m: func(m *Message) { m.Subject = "SpO2 \x00low" }},
		{name: "CRLF in ID", m: func(m *Message) { m.ID = "17\r\nBcc: all@ward.example" }},
		{name: "no ID", m: func(m *Message) { m.ID = "" }},
		{name: "recipient not an address", to: "nurse at ward"},
		{name: "two recipients", to: "a@ward.example, b@ward.example"},
		{name: "empty recipient", to: " "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := testMessage()
			if tt.m != nil {
				tt.m(&m)
			}
			s := &SMTP{Addr: addr, From: cmp.Or(tt.from, "alarms@tend.example")}
			_, err := s.Send(context.Background(), Recipient{Kind: "email", Address: cmp.Or(tt.to, "nurse@ward.example")}, m)
			if !IsPermanent(err) {
				t.Errorf("err = %v, want Permanent", err)
			}
		})
	}
	if n := len(mb.deliveries()); n != 0 {
		t.Errorf("server accepted %d messages, want none", n)
	}
}

func TestSMTPStartTLSAndAuth(t *testing.T) {
	serverTLS, clientTLS := testTLSConfigs(t)
	addr, mb := startSMTPServer(t, serverTLS)

	tests := []struct {
		name          string
		smtp          SMTP
		wantOK        bool
		wantPermanent bool
	}{
		{name: "STARTTLS and AUTH", smtp: SMTP{StartTLS: true, TLSConfig: clientTLS, Username: "tend", Password: "pw-right"}, wantOK: true},
		{name: "STARTTLS, no AUTH", smtp: SMTP{StartTLS: true, TLSConfig: clientTLS}, wantOK: true},
		{name: "wrong password", smtp: SMTP{StartTLS: true, TLSConfig: clientTLS, Username: "tend", Password: "pw-wrong"}, wantPermanent: true},
		{name: "untrusted certificate", smtp: SMTP{StartTLS: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := tt.smtp
			s.Addr, s.From, s.Timeout = addr, "alarms@tend.example", 5*time.Second
			before := len(mb.deliveries())
			_, err := s.Send(context.Background(), Recipient{Kind: "email", Address: "nurse@ward.example"}, testMessage())
			if tt.wantOK {
				if err != nil {
					t.Fatalf("Send: %v", err)
				}
				mb.mu.Lock()
				encrypted := mb.tls[len(mb.tls)-1]
				mb.mu.Unlock()
				if !encrypted {
					t.Error("message was delivered without TLS")
				}
				return
			}
			if err == nil {
				t.Fatal("Send succeeded")
			}
			if IsPermanent(err) != tt.wantPermanent {
				t.Errorf("IsPermanent(%v) = %v, want %v", err, IsPermanent(err), tt.wantPermanent)
			}
			if strings.Contains(err.Error(), "pw-") {
				t.Errorf("error %q shows the password", err)
			}
			if after := len(mb.deliveries()); after != before {
				t.Errorf("a message was delivered")
			}
		})
	}
}

func TestSMTPRequireTLSWithoutOffer(t *testing.T) {
	addr, mb := startSMTPServer(t, nil) // offers no STARTTLS
	s := &SMTP{Addr: addr, From: "alarms@tend.example", StartTLS: true, Username: "tend", Password: "pw-right"}
	_, err := s.Send(context.Background(), Recipient{Kind: "email", Address: "nurse@ward.example"}, testMessage())
	if err == nil || !strings.Contains(err.Error(), "STARTTLS") {
		t.Fatalf("err = %v, want a STARTTLS error", err)
	}
	mb.mu.Lock()
	defer mb.mu.Unlock()
	if len(mb.logins) != 0 || len(mb.delivered) != 0 {
		t.Errorf("without TLS: %d logins, %d messages; want none", len(mb.logins), len(mb.delivered))
	}
}

func TestSMTPPasswordNeedsTLS(t *testing.T) {
	s := &SMTP{Addr: "mail.example.org:587", From: "alarms@tend.example", Username: "tend", Password: "pw"}
	_, err := s.Send(context.Background(), Recipient{Kind: "email", Address: "nurse@ward.example"}, testMessage())
	if !IsPermanent(err) || !strings.Contains(err.Error(), "unencrypted") {
		t.Errorf("err = %v, want a Permanent error about sending the password unencrypted", err)
	}
}

func TestSMTPTimeout(t *testing.T) {
	// A server that accepts connections and never greets.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})

	s := &SMTP{Addr: l.Addr().String(), From: "alarms@tend.example", Timeout: 200 * time.Millisecond}
	start := time.Now()
	_, err = s.Send(context.Background(), Recipient{Kind: "email", Address: "nurse@ward.example"}, testMessage())
	if err == nil || IsPermanent(err) || !strings.Contains(err.Error(), "not done within 200ms") {
		t.Errorf("err = %v, want a retryable timeout", err)
	}
	if elapsed := time.Since(start); elapsed > 5*time.Second {
		t.Errorf("Send returned after %v", elapsed)
	}

	// Cancelling the context stops a delivery as well.
	ctx, cancel := context.WithCancel(context.Background())
	s.Timeout = time.Minute
	done := make(chan error, 1)
	go func() {
		_, err := s.Send(ctx, Recipient{Kind: "email", Address: "nurse@ward.example"}, testMessage())
		done <- err
	}()
	cancel()
	select {
	case err := <-done:
		if err == nil || IsPermanent(err) {
			t.Errorf("after cancel: err = %v, want a retryable error", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Send did not return after its context was cancelled")
	}
}

func TestSMTPConnectionRefusedRetryable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	s := &SMTP{Addr: addr, From: "alarms@tend.example"}
	if _, err := s.Send(context.Background(), Recipient{Kind: "email", Address: "nurse@ward.example"}, testMessage()); err == nil || IsPermanent(err) {
		t.Errorf("err = %v, want a retryable error", err)
	}
}

func TestComposeMailGolden(t *testing.T) {
	long := testMessage()
	long.ID = "01JD8ZQ1/weird.id"
	long.Subject = "Hohe Priorität: SpO₂ unter 90 % seit 2 Minuten bei Patient in Zimmer 12, Station Süd"
	long.Body = []byte(`not json: <b>é</b>`)
	long.Event = ""
	tests := []struct {
		golden   string
		from, to string
		m        Message
	}{
		{"ascii.eml", "Tend <alarms@tend.example>", "nurse@ward.example", testMessage()},
		{"utf8.eml", "alarms@tend.example", "Schwester Müller <mueller@ward.example>", long},
	}
	for _, tt := range tests {
		t.Run(tt.golden, func(t *testing.T) {
			from, err := parseMailAddress("sender", tt.from)
			if err != nil {
				t.Fatal(err)
			}
			to, err := parseMailAddress("recipient", tt.to)
			if err != nil {
				t.Fatal(err)
			}
			got, err := composeMail(from, to, tt.m)
			if err != nil {
				t.Fatal(err)
			}
			for i, line := range strings.Split(string(got), "\r\n") {
				if len(line) > 78 {
					t.Errorf("line %d is %d characters long: %q", i+1, len(line), line)
				}
				if strings.ContainsAny(line, "\r\n") {
					t.Errorf("line %d has a bare line break: %q", i+1, line)
				}
			}
			path := filepath.Join("testdata", tt.golden)
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("composeMail differs from %s (run with -update if intended):\n%s", path, got)
			}
		})
	}
}

func TestMessageID(t *testing.T) {
	tests := []struct {
		id, from, want string
	}{
		{"17", "alarms@tend.example", "<tend.17@tend.example>"},
		{"01JD8ZQ1-x_y", "a@b.example", "<tend.01JD8ZQ1-x_y@b.example>"},
		{"a.b", "a@b.example", "<tend.h.612e62@b.example>"},
		{"h.612e62", "a@b.example", "<tend.h.682e363132653632@b.example>"},
		{"x", "a@[127.0.0.1]", "<tend.x@tend.invalid>"},
	}
	for _, tt := range tests {
		if got := messageID(tt.id, tt.from); got != tt.want {
			t.Errorf("messageID(%q, %q) = %q, want %q", tt.id, tt.from, got, tt.want)
		}
	}
}

// testTLSConfigs makes a self-signed certificate for 127.0.0.1 and the
// server and client configurations that use and trust it.
func testTLSConfigs(t *testing.T) (server, client *tls.Config) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	template := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "mx.test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, template, template, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	server = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
	client = &tls.Config{RootCAs: pool}
	return server, client
}
