package notify

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	testSecret = []byte("whsec_test_0123456789")
	testNow    = time.Date(2026, 11, 23, 20, 0, 0, 0, time.UTC)
	testBody   = []byte(`{"id":"alarm-17","patient":"p-1","priority":"high","kind":"spo2.low","state":"active"}`)
)

func testMessage() Message {
	return Message{
		ID:      "outbox-17",
		Event:   "alarm.raised",
		Subject: "High priority: SpO2 low",
		Body:    testBody,
		Created: testNow.Add(-time.Second),
		Attempt: 1,
	}
}

// received is what a test endpoint saw.
type received struct {
	method, contentType, idempotencyKey, event, signature string
	body                                                  []byte
}

// endpoint starts an HTTP server answering with status (and header, body)
// and records each request.
func endpoint(t *testing.T, answer func(w http.ResponseWriter, r *http.Request)) (*httptest.Server, func() []received) {
	t.Helper()
	var mu sync.Mutex
	var got []received
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, received{
			method:         r.Method,
			contentType:    r.Header.Get("Content-Type"),
			idempotencyKey: r.Header.Get(HeaderIdempotencyKey),
			event:          r.Header.Get(HeaderEvent),
			signature:      r.Header.Get(HeaderSignature),
			body:           body,
		})
		mu.Unlock()
		answer(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv, func() []received {
		mu.Lock()
		defer mu.Unlock()
		return append([]received(nil), got...)
	}
}

func status(code int, header ...string) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, _ *http.Request) {
		for i := 0; i+1 < len(header); i += 2 {
			w.Header().Set(header[i], header[i+1])
		}
		w.WriteHeader(code)
		io.WriteString(w, http.StatusText(code))
	}
}

func TestWebhookStatusClasses(t *testing.T) {
	tests := []struct {
		name          string
		answer        func(http.ResponseWriter, *http.Request)
		wantDetail    string // set when delivery succeeds
		wantPermanent bool
		wantRetry     time.Duration // expected Retry-After, 0 for none
		wantErrText   string
	}{
		{name: "200", answer: status(200), wantDetail: "HTTP 200"},
		{name: "202", answer: status(202), wantDetail: "HTTP 202"},
		{name: "204", answer: status(204), wantDetail: "HTTP 204"},
		{name: "500 retryable", answer: status(500), wantErrText: "HTTP 500: Internal Server Error"},
		{name: "502 retryable", answer: status(502), wantErrText: "HTTP 502"},
		{name: "503 with Retry-After", answer: status(503, "Retry-After", "120"), wantRetry: 2 * time.Minute},
		{name: "429 with Retry-After date", answer: status(429, "Retry-After", testNow.Add(30*time.Second).Format(http.TimeFormat)), wantRetry: 30 * time.Second},
		{name: "429 Retry-After capped", answer: status(429, "Retry-After", "86400"), wantRetry: MaxBackoff},
		{name: "408 retryable", answer: status(408), wantErrText: "HTTP 408"},
		{name: "425 retryable", answer: status(425), wantErrText: "HTTP 425"},
		{name: "410 permanent", answer: status(410), wantPermanent: true, wantErrText: "HTTP 410: Gone"},
		{name: "400 permanent", answer: status(400), wantPermanent: true, wantErrText: "HTTP 400"},
		{name: "401 permanent", answer: status(401), wantPermanent: true, wantErrText: "HTTP 401"},
		{name: "404 permanent", answer: status(404), wantPermanent: true, wantErrText: "HTTP 404"},
		{name: "redirect permanent", answer: status(307, "Location", "https://elsewhere.example/"), wantPermanent: true, wantErrText: "redirect not followed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, got := endpoint(t, tt.answer)
			w := &Webhook{Client: srv.Client(), Now: func() time.Time { return testNow }}
			receipt, err := w.Send(context.Background(), Recipient{Kind: "webhook", Address: srv.URL + "/hook", Secret: testSecret}, testMessage())

			if tt.wantDetail != "" {
				if err != nil {
					t.Fatalf("Send: %v", err)
				}
				if receipt.Detail != tt.wantDetail || !receipt.At.Equal(testNow) {
					t.Errorf("receipt = %+v, want Detail %q At %v", receipt, tt.wantDetail, testNow)
				}
			} else {
				if err == nil {
					t.Fatalf("Send succeeded with receipt %+v, want an error", receipt)
				}
				if IsPermanent(err) != tt.wantPermanent {
					t.Errorf("IsPermanent(%v) = %v, want %v", err, IsPermanent(err), tt.wantPermanent)
				}
				if !strings.Contains(err.Error(), tt.wantErrText) {
					t.Errorf("error %q does not contain %q", err, tt.wantErrText)
				}
				delay, ok := RetryAfter(err)
				if ok != (tt.wantRetry != 0) || delay != tt.wantRetry {
					t.Errorf("RetryAfter = %v, %v; want %v", delay, ok, tt.wantRetry)
				}
			}
			if n := len(got()); n != 1 {
				t.Errorf("endpoint saw %d requests, want 1", n)
			}
		})
	}
}

func TestWebhookRequest(t *testing.T) {
	srv, got := endpoint(t, status(200))
	w := &Webhook{Client: srv.Client(), Now: func() time.Time { return testNow }}
	m := testMessage()
	if _, err := w.Send(context.Background(), Recipient{Kind: "webhook", Address: srv.URL, Secret: testSecret}, m); err != nil {
		t.Fatal(err)
	}
	reqs := got()
	if len(reqs) != 1 {
		t.Fatalf("endpoint saw %d requests, want 1", len(reqs))
	}
	r := reqs[0]
	if r.method != http.MethodPost || r.contentType != "application/json" || r.idempotencyKey != m.ID || r.event != m.Event {
		t.Errorf("request = %s, Content-Type %q, Idempotency-Key %q, Tend-Event %q", r.method, r.contentType, r.idempotencyKey, r.event)
	}
	if string(r.body) != string(m.Body) {
		t.Errorf("body = %s, want the message body as is", r.body)
	}
	if want := SignatureHeader(testSecret, testNow, m.Body); r.signature != want {
		t.Errorf("signature = %q, want %q", r.signature, want)
	}
	if !strings.HasPrefix(r.signature, "t=1795464000,v1=") {
		t.Errorf("signature %q does not carry t=%d", r.signature, testNow.Unix())
	}

	// What a receiver does with it.
	if err := VerifySignature(testSecret, r.signature, r.body, testNow.Add(time.Minute), 0); err != nil {
		t.Errorf("VerifySignature of the received request: %v", err)
	}
	tampered := []byte(strings.Replace(string(r.body), "high", "low", 1))
	if err := VerifySignature(testSecret, r.signature, tampered, testNow, 0); !errors.Is(err, ErrSignatureMismatch) {
		t.Errorf("VerifySignature of a tampered body = %v, want ErrSignatureMismatch", err)
	}
	if err := VerifySignature(testSecret, r.signature, r.body, testNow.Add(10*time.Minute), 5*time.Minute); !errors.Is(err, ErrSignatureExpired) {
		t.Errorf("VerifySignature ten minutes later = %v, want ErrSignatureExpired", err)
	}
	if err := VerifySignature([]byte("another secret"), r.signature, r.body, testNow, 0); !errors.Is(err, ErrSignatureMismatch) {
		t.Errorf("VerifySignature with another secret = %v, want ErrSignatureMismatch", err)
	}
}

func TestWebhookRedirectNotFollowed(t *testing.T) {
	elsewhere, elsewhereGot := endpoint(t, status(200))
	srv, got := endpoint(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, elsewhere.URL, http.StatusPermanentRedirect)
	})
	// A client that would follow redirects on its own.
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return nil }}
	w := &Webhook{Client: client, Now: func() time.Time { return testNow }}
	_, err := w.Send(context.Background(), Recipient{Kind: "webhook", Address: srv.URL, Secret: testSecret}, testMessage())
	if !IsPermanent(err) {
		t.Errorf("err = %v, want Permanent", err)
	}
	if len(got()) != 1 || len(elsewhereGot()) != 0 {
		t.Errorf("requests: %d to the endpoint, %d to the redirect target; want 1 and 0", len(got()), len(elsewhereGot()))
	}
}

func TestWebhookTimeout(t *testing.T) {
	release := make(chan struct{})
	srv, _ := endpoint(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	defer close(release)

	const timeout = 200 * time.Millisecond
	w := &Webhook{Client: srv.Client(), Now: func() time.Time { return testNow }, Timeout: timeout}
	start := time.Now()
	_, err := w.Send(context.Background(), Recipient{Kind: "webhook", Address: srv.URL, Secret: testSecret}, testMessage())
	elapsed := time.Since(start)
	if err == nil || IsPermanent(err) {
		t.Fatalf("err = %v, want a retryable error", err)
	}
	if !strings.Contains(err.Error(), "no answer within 200ms") {
		t.Errorf("error %q does not say it timed out", err)
	}
	if elapsed > 5*time.Second {
		t.Errorf("Send returned after %v with a %v timeout", elapsed, timeout)
	}
}

func TestWebhookSlowBodyHitsTimeout(t *testing.T) {
	// The timeout covers reading the answer too, not only the headers.
	release := make(chan struct{})
	srv, _ := endpoint(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(500)
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	defer close(release)
	w := &Webhook{Client: srv.Client(), Timeout: 200 * time.Millisecond}
	start := time.Now()
	_, err := w.Send(context.Background(), Recipient{Kind: "webhook", Address: srv.URL, Secret: testSecret}, testMessage())
	if err == nil || IsPermanent(err) {
		t.Fatalf("err = %v, want a retryable error", err)
	}
	if elapsed := time.Since(start); elapsed > 5*time.Second {
		t.Errorf("Send returned after %v", elapsed)
	}
}

func TestWebhookAnswerReadAtMost4KiB(t *testing.T) {
	srv, _ := endpoint(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(400)
		io.WriteString(w, strings.Repeat("x", 1<<20))
	})
	w := &Webhook{Client: srv.Client()}
	_, err := w.Send(context.Background(), Recipient{Kind: "webhook", Address: srv.URL, Secret: testSecret}, testMessage())
	if !IsPermanent(err) {
		t.Fatalf("err = %v, want Permanent", err)
	}
	if len(err.Error()) > 400 {
		t.Errorf("error is %d bytes long; the answer should be cut short", len(err.Error()))
	}
}

func TestWebhookNetworkErrorRetryable(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	address := srv.URL
	srv.Close() // nothing listens there any more
	w := &Webhook{}
	_, err := w.Send(context.Background(), Recipient{Kind: "webhook", Address: address, Secret: testSecret}, testMessage())
	if err == nil || IsPermanent(err) {
		t.Errorf("err = %v, want a retryable error", err)
	}
}

func TestWebhookRefusesBadInput(t *testing.T) {
	srv, got := endpoint(t, status(200))
	withSecretInURL := strings.Replace(srv.URL, "http://", "http://user:urlpassword@", 1) + "/hook?token=urltoken"
	tests := []struct {
		name string
		to   Recipient
		m    func(*Message)
	}{
		{name: "ftp scheme", to: Recipient{Address: "ftp://example.org/x", Secret: testSecret}},
		{name: "mailto", to: Recipient{Address: "mailto:a@example.org", Secret: testSecret}},
		{name: "relative", to: Recipient{Address: "/hook", Secret: testSecret}},
		{name: "not a URL", to: Recipient{Address: "http://[::1", Secret: testSecret}},
		{name: "no secret", to: Recipient{Address: srv.URL}},
		{name: "no ID", to: Recipient{Address: srv.URL, Secret: testSecret}, m: func(m *Message) { m.ID = "" }},
		{name: "header injection in ID", to: Recipient{Address: srv.URL, Secret: testSecret}, m: func(m *Message) { m.ID = "1\r\nX-Evil: 1" }},
		{name: "header injection in event", to: Recipient{Address: srv.URL, Secret: testSecret}, m: func(m *Message) { m.Event = "alarm.raised\nX-Evil: 1" }},
		{name: "secrets in URL stay out of errors", to: Recipient{Address: withSecretInURL, Secret: testSecret}, m: func(m *Message) { m.ID = "" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := testMessage()
			if tt.m != nil {
				tt.m(&m)
			}
			w := &Webhook{Client: srv.Client()}
			_, err := w.Send(context.Background(), tt.to, m)
			if !IsPermanent(err) {
				t.Fatalf("err = %v, want Permanent", err)
			}
			for _, secret := range []string{string(testSecret), "urlpassword", "urltoken"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error %q contains a secret", err)
				}
			}
		})
	}
	if n := len(got()); n != 0 {
		t.Errorf("endpoint saw %d requests, want none", n)
	}
}

func TestWebhookErrorsHideURLSecrets(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	address := strings.Replace(srv.URL, "http://", "http://user:urlpassword@", 1) + "/hook?token=urltoken"
	srv.Close()
	_, err := (&Webhook{}).Send(context.Background(), Recipient{Address: address, Secret: testSecret}, testMessage())
	if err == nil {
		t.Fatal("Send to a closed server succeeded")
	}
	for _, secret := range []string{string(testSecret), "urlpassword", "urltoken"} {
		if strings.Contains(err.Error(), secret) {
			t.Errorf("error %q contains a secret", err)
		}
	}
}

func TestParseRetryAfter(t *testing.T) {
	tests := []struct {
		value  string
		want   time.Duration
		wantOK bool
	}{
		{"", 0, false},
		{"0", 0, true},
		{" 7 ", 7 * time.Second, true},
		{"299", 299 * time.Second, true},
		{"301", MaxBackoff, true},
		{"4294967295", MaxBackoff, true},
		{"99999999999", 0, false},
		{"-5", 0, false},
		{"1.5", 0, false},
		{testNow.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second, true},
		{testNow.Add(-time.Hour).Format(http.TimeFormat), 0, true},
		{"tomorrow", 0, false},
	}
	for _, tt := range tests {
		got, ok := parseRetryAfter(tt.value, testNow)
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("parseRetryAfter(%q) = %v, %v; want %v, %v", tt.value, got, ok, tt.want, tt.wantOK)
		}
	}
}

func FuzzParseRetryAfter(f *testing.F) {
	f.Add("120")
	f.Add("Wed, 21 Oct 2015 07:28:00 GMT")
	f.Add("Monday, 02-Jan-06 15:04:05 MST")
	f.Add("-1")
	f.Fuzz(func(t *testing.T, value string) {
		d, ok := parseRetryAfter(value, testNow)
		if d < 0 || d > MaxBackoff || (!ok && d != 0) {
			t.Fatalf("parseRetryAfter(%q) = %v, %v", value, d, ok)
		}
	})
}
