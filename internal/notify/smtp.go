package notify

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"net/smtp"
	"net/textproto"
	"os"
	"strconv"
	"strings"
	"time"
)

// DefaultSMTPTimeout bounds one e-mail delivery, from connecting to the
// answer to the message, when SMTP.Timeout is zero.
const DefaultSMTPTimeout = 30 * time.Second

// SMTP sends each message as a plain-text e-mail to Recipient.Address
// through one submission server.
//
// The e-mail's Message-ID is derived from Message.ID, and its Date is
// Message.Created, so a retried message is the same e-mail and mail clients
// show duplicates as one. The body is the JSON document pretty-printed.
//
// SMTP replies 4xx are worth retrying, 5xx are Permanent, as are addresses
// and subjects that are malformed or try to inject header lines.
type SMTP struct {
	// Addr is the server's host:port, e.g. "smtp.example.org:587".
	Addr string
	// From is the sender address, e.g. "Tend <alarms@example.org>". Its
	// domain also names the Message-ID.
	From string
	// Username and Password, if set, authenticate with AUTH PLAIN. The
	// password is sent only over TLS (or to localhost).
	Username, Password string
	// StartTLS requires the connection to be upgraded with STARTTLS before
	// anything else is sent; a server that does not offer it fails the
	// attempt. Without it the session stays in plain text (a local relay).
	StartTLS bool
	// TLSConfig is used for STARTTLS; nil verifies the server's certificate
	// against the host in Addr.
	TLSConfig *tls.Config
	// HelloName is the name given in EHLO; empty means "localhost".
	HelloName string
	// Timeout bounds one delivery; zero means DefaultSMTPTimeout.
	Timeout time.Duration
	// Now stamps receipts and the Date of messages with no Created time;
	// nil means time.Now.
	Now func() time.Time
}

// Send delivers m to the e-mail address to.Address.
func (s *SMTP) Send(ctx context.Context, to Recipient, m Message) (Receipt, error) {
	from, err := parseMailAddress("sender", s.From)
	if err != nil {
		return Receipt{}, Permanent(fmt.Errorf("e-mail: %w", err))
	}
	rcpt, err := parseMailAddress("recipient", to.Address)
	if err != nil {
		return Receipt{}, Permanent(fmt.Errorf("e-mail: %w", err))
	}
	where := "e-mail to " + rcpt.Address
	if m.Created.IsZero() {
		m.Created = s.now()
	}
	content, err := composeMail(from, rcpt, m)
	if err != nil {
		return Receipt{}, Permanent(fmt.Errorf("%s: %w", where, err))
	}

	timeout := s.Timeout
	if timeout <= 0 {
		timeout = DefaultSMTPTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	reply, err := s.deliver(ctx, from.Address, rcpt.Address, content)
	if err != nil {
		// The connection deadline may fire a moment before the context
		// notices its own; both mean the delivery ran out of time.
		if ctx.Err() == context.DeadlineExceeded || errors.Is(err, os.ErrDeadlineExceeded) && ctx.Err() != context.Canceled {
			return Receipt{}, fmt.Errorf("%s via %s: not done within %v: %w", where, s.Addr, timeout, err)
		}
		err = fmt.Errorf("%s via %s: %w", where, s.Addr, err)
		var protoErr *textproto.Error
		if errors.As(err, &protoErr) && protoErr.Code >= 500 {
			return Receipt{}, Permanent(err)
		}
		return Receipt{}, err
	}
	return Receipt{At: s.now(), Detail: reply}, nil
}

// deliver runs one SMTP session and returns the server's answer to the
// message data, e.g. "250 2.0.0 queued as X".
func (s *SMTP) deliver(ctx context.Context, from, to string, content []byte) (string, error) {
	host, _, err := net.SplitHostPort(s.Addr)
	if err != nil {
		return "", Permanent(fmt.Errorf("server address: %w", err))
	}
	if s.Username != "" && !s.StartTLS && !isLoopback(host) {
		// net/smtp would refuse too, but only after connecting, and the
		// mistake is in the configuration, not the network.
		return "", Permanent(errors.New("a password would be sent unencrypted: enable StartTLS"))
	}
	var dialer net.Dialer
	conn, err := dialer.DialContext(ctx, "tcp", s.Addr)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	// net/smtp has no context: the deadline bounds every read and write,
	// and cancelling the context expires it at once.
	if deadline, ok := ctx.Deadline(); ok {
		conn.SetDeadline(deadline)
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	client, err := smtp.NewClient(conn, host)
	if err != nil {
		return "", fmt.Errorf("greeting: %w", err)
	}
	defer client.Close()
	if err := client.Hello(cmp.Or(s.HelloName, "localhost")); err != nil {
		return "", fmt.Errorf("EHLO: %w", err)
	}
	if s.StartTLS {
		if ok, _ := client.Extension("STARTTLS"); !ok {
			// Retryable: a server that normally offers STARTTLS and now
			// does not may be misconfigured or have the offer stripped.
			return "", errors.New("server does not offer STARTTLS, which is required")
		}
		config := s.TLSConfig.Clone()
		if config == nil {
			config = &tls.Config{}
		}
		if config.ServerName == "" {
			config.ServerName = host
		}
		if err := client.StartTLS(config); err != nil {
			return "", fmt.Errorf("STARTTLS: %w", err)
		}
	}
	if s.Username != "" {
		if ok, _ := client.Extension("AUTH"); !ok {
			return "", Permanent(errors.New("server does not offer AUTH, but a username is configured"))
		}
		if err := client.Auth(smtp.PlainAuth("", s.Username, s.Password, host)); err != nil {
			return "", fmt.Errorf("AUTH: %w", err)
		}
	}
	if err := client.Mail(from); err != nil {
		return "", fmt.Errorf("MAIL FROM: %w", err)
	}
	if err := client.Rcpt(to); err != nil {
		return "", fmt.Errorf("RCPT TO: %w", err)
	}
	// Client.Data hides the server's final answer, which is the receipt,
	// so the DATA exchange is done on the underlying text connection.
	reply, err := sendData(client.Text, content)
	if err != nil {
		return "", err
	}
	// The message is accepted; a failed QUIT changes nothing.
	_ = client.Quit()
	return reply, nil
}

// sendData sends DATA, the dot-encoded content and returns the final reply.
func sendData(text *textproto.Conn, content []byte) (string, error) {
	id, err := text.Cmd("DATA")
	if err != nil {
		return "", fmt.Errorf("DATA: %w", err)
	}
	text.StartResponse(id)
	_, _, err = text.ReadResponse(354)
	text.EndResponse(id)
	if err != nil {
		return "", fmt.Errorf("DATA: %w", err)
	}
	w := text.DotWriter()
	if _, err := w.Write(content); err != nil {
		return "", fmt.Errorf("message data: %w", err)
	}
	if err := w.Close(); err != nil {
		return "", fmt.Errorf("message data: %w", err)
	}
	code, msg, err := text.ReadResponse(250)
	if err != nil {
		return "", fmt.Errorf("message data: %w", err)
	}
	// A multi-line answer is kept on one line for the receipt.
	return strconv.Itoa(code) + " " + strings.ReplaceAll(msg, "\n", " "), nil
}

func (s *SMTP) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// parseMailAddress parses one RFC 5322 address, refusing line breaks
// before parsing so no input can add a header line.
func parseMailAddress(role, address string) (*mail.Address, error) {
	if strings.ContainsAny(address, "\r\n") {
		return nil, fmt.Errorf("%s address contains a line break", role)
	}
	a, err := mail.ParseAddress(address)
	if err != nil {
		return nil, fmt.Errorf("%s address %q: %w", role, address, err)
	}
	// The address itself goes into MAIL FROM / RCPT TO as is.
	if strings.ContainsAny(a.Address, "\r\n<> ") {
		return nil, fmt.Errorf("%s address %q is not usable in an SMTP command", role, address)
	}
	return a, nil
}

// composeMail renders the whole e-mail, headers and body, with CRLF line
// ends.
func composeMail(from, to *mail.Address, m Message) ([]byte, error) {
	if err := validateMessage(m); err != nil {
		return nil, err
	}
	if strings.ContainsAny(m.Subject, "\r\n") {
		return nil, errors.New("subject contains a line break")
	}
	for _, r := range m.Subject {
		if r < ' ' || r == 0x7f {
			return nil, fmt.Errorf("subject contains control character %U", r)
		}
	}

	var b bytes.Buffer
	header := func(name, value string) {
		b.WriteString(foldHeader(name + ": " + value))
		b.WriteString("\r\n")
	}
	header("From", from.String())
	header("To", to.String())
	header("Subject", mime.QEncoding.Encode("utf-8", m.Subject))
	header("Date", m.Created.Format(time.RFC1123Z))
	header("Message-ID", messageID(m.ID, from.Address))
	header("MIME-Version", "1.0")
	header("Content-Type", "text/plain; charset=utf-8")
	header("Content-Transfer-Encoding", "quoted-printable")
	header("X-Tend-Idempotency-Key", m.ID)
	if m.Event != "" {
		header("X-Tend-Event", m.Event)
	}
	b.WriteString("\r\n")

	// Quoted-printable keeps the body 7-bit and its lines short whatever
	// the server supports, and stays readable for ASCII text.
	qp := quotedprintable.NewWriter(&b)
	if _, err := qp.Write(renderBody(m.Body)); err != nil {
		return nil, fmt.Errorf("encoding body: %w", err)
	}
	if err := qp.Close(); err != nil {
		return nil, fmt.Errorf("encoding body: %w", err)
	}
	return b.Bytes(), nil
}

// renderBody pretty-prints a JSON body for people; a body that is not JSON
// is shown as text.
func renderBody(body []byte) []byte {
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, body, "", "  "); err != nil {
		return []byte(strings.ToValidUTF8(string(body), "\uFFFD") + "\n")
	}
	pretty.WriteByte('\n')
	return pretty.Bytes()
}

// messageID derives the e-mail Message-ID from the notification id, so all
// attempts of one notification share it. Ids made of letters, digits, '-'
// and '_' are used as they are; others are hex-encoded behind "h.", which
// cannot collide with a plain id because plain ids contain no '.'.
func messageID(id, fromAddress string) string {
	domain := "tend.invalid"
	if _, d, ok := strings.Cut(fromAddress, "@"); ok && isDotAtom(d) {
		domain = d
	}
	local := id
	if !isPlainID(id) {
		local = "h." + hex.EncodeToString([]byte(id))
	}
	return "<tend." + local + "@" + domain + ">"
}

func isPlainID(id string) bool {
	if id == "" {
		return false
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

// isDotAtom reports whether a domain can be used bare in a Message-ID.
func isDotAtom(domain string) bool {
	if domain == "" || strings.HasPrefix(domain, ".") || strings.HasSuffix(domain, ".") || strings.Contains(domain, "..") {
		return false
	}
	for _, r := range domain {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.') {
			return false
		}
	}
	return true
}

// foldHeader breaks a header line longer than 78 characters at spaces
// (RFC 5322 §2.2.3). Encoded words are separated by spaces, so long encoded
// subjects fold too.
func foldHeader(line string) string {
	const limit = 78
	if len(line) <= limit {
		return line
	}
	var b strings.Builder
	lineLen := 0
	for i, word := range strings.Split(line, " ") {
		if i > 0 {
			// A continuation line must not be blank, so only fold before
			// a word.
			if word != "" && lineLen+1+len(word) > limit {
				b.WriteString("\r\n ")
				lineLen = 1
			} else {
				b.WriteByte(' ')
				lineLen++
			}
		}
		b.WriteString(word)
		lineLen += len(word)
	}
	return b.String()
}

// isLoopback reports whether host names this machine, where net/smtp allows
// authentication without TLS.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
