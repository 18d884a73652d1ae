package notify

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// Webhook request headers.
const (
	HeaderSignature      = "Tend-Signature"
	HeaderEvent          = "Tend-Event"
	HeaderIdempotencyKey = "Idempotency-Key"
)

// DefaultWebhookTimeout bounds one webhook request when Webhook.Timeout is
// zero.
const DefaultWebhookTimeout = 10 * time.Second

// maxResponseBytes is how much of a receiver's answer is read: enough for
// an error message, not enough for a hostile endpoint to exhaust memory.
const maxResponseBytes = 4 << 10

// Webhook POSTs the message body to Recipient.Address, an http or https URL.
//
// The request carries:
//
//	Content-Type: application/json
//	Idempotency-Key: <Message.ID>
//	Tend-Event: <Message.Event>
//	Tend-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(Recipient.Secret, "<t>." + body)>
//
// A 2xx answer is a delivery. 408, 425, 429, 5xx, network and TLS errors and
// timeouts are worth retrying; any other status, including a redirect, is
// Permanent. Redirects are never followed, so a signed payload goes only to
// the address it was signed for.
type Webhook struct {
	// Client sends the requests; nil means a client with
	// http.DefaultTransport. Its CheckRedirect and Timeout are not used.
	Client *http.Client
	// Now stamps signatures and receipts; nil means time.Now.
	Now func() time.Time
	// Timeout bounds one request, answer included, so a hanging endpoint
	// cannot hold up the dispatcher; zero means DefaultWebhookTimeout.
	Timeout time.Duration
}

// Send makes one signed POST of m.Body to to.Address.
func (w *Webhook) Send(ctx context.Context, to Recipient, m Message) (Receipt, error) {
	endpoint, err := webhookURL(to.Address)
	if err != nil {
		return Receipt{}, Permanent(fmt.Errorf("webhook: %w", err))
	}
	// Errors name the host only: webhook URLs often embed access tokens.
	where := "webhook to " + endpoint.Host
	if len(to.Secret) == 0 {
		return Receipt{}, Permanent(fmt.Errorf("%s: recipient has no signing secret", where))
	}
	if err := validateMessage(m); err != nil {
		return Receipt{}, Permanent(fmt.Errorf("%s: %w", where, err))
	}

	timeout := w.Timeout
	if timeout <= 0 {
		timeout = DefaultWebhookTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint.String(), bytes.NewReader(m.Body))
	if err != nil {
		return Receipt{}, Permanent(fmt.Errorf("%s: building request: %w", where, err))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Tend-Webhook/1")
	req.Header.Set(HeaderIdempotencyKey, m.ID)
	if m.Event != "" {
		req.Header.Set(HeaderEvent, m.Event)
	}
	req.Header.Set(HeaderSignature, SignatureHeader(to.Secret, w.now(), m.Body))

	resp, err := w.client().Do(req)
	if err != nil {
		// *url.Error repeats the full URL; keep only the cause.
		var urlErr *url.Error
		if errors.As(err, &urlErr) {
			err = urlErr.Err
		}
		if ctx.Err() == context.DeadlineExceeded {
			return Receipt{}, fmt.Errorf("%s: no answer within %v: %w", where, timeout, err)
		}
		return Receipt{}, fmt.Errorf("%s: %w", where, err)
	}
	defer resp.Body.Close()
	answer, readErr := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))

	status := "HTTP " + strconv.Itoa(resp.StatusCode)
	switch code := resp.StatusCode; {
	case code >= 200 && code < 300:
		// The status decides delivery; a body cut short does not undo it.
		return Receipt{At: w.now(), Detail: status}, nil
	case code >= 300 && code < 400:
		return Receipt{}, Permanent(fmt.Errorf("%s: %s: redirect not followed, the URL needs updating", where, status))
	case code == http.StatusRequestTimeout, code == http.StatusTooEarly,
		code == http.StatusTooManyRequests, code >= 500:
		err := fmt.Errorf("%s: %s%s", where, status, excerpt(answer, readErr))
		if delay, ok := parseRetryAfter(resp.Header.Get("Retry-After"), w.now()); ok {
			err = &retryAfterError{err: err, delay: delay}
		}
		return Receipt{}, err
	default:
		return Receipt{}, Permanent(fmt.Errorf("%s: %s%s", where, status, excerpt(answer, readErr)))
	}
}

func (w *Webhook) now() time.Time {
	if w.Now != nil {
		return w.Now()
	}
	return time.Now()
}

// client returns a copy of the configured client that never follows
// redirects; the per-request timeout comes from the context instead.
func (w *Webhook) client() *http.Client {
	c := http.Client{}
	if w.Client != nil {
		c = *w.Client
	}
	c.Timeout = 0
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &c
}

// webhookURL parses an absolute http or https URL.
func webhookURL(address string) (*url.URL, error) {
	u, err := url.Parse(address)
	if err != nil {
		// The parse error quotes the address, which may hold a token.
		return nil, errors.New("recipient address is not a valid URL")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("recipient address scheme %q is not http or https", u.Scheme)
	}
	if u.Host == "" {
		return nil, errors.New("recipient address has no host")
	}
	return u, nil
}

// excerpt renders the start of a receiver's answer for an error message:
// one line of at most 200 printable characters.
func excerpt(answer []byte, readErr error) string {
	if readErr != nil {
		return " (reading answer: " + readErr.Error() + ")"
	}
	text := strings.Map(func(r rune) rune {
		if unicode.IsPrint(r) {
			return r
		}
		return ' '
	}, strings.ToValidUTF8(string(answer), "?"))
	text = strings.TrimSpace(text)
	if text == "" {
		return ""
	}
	if runes := []rune(text); len(runes) > 200 {
		text = string(runes[:200]) + "…"
	}
	return ": " + text
}

// parseRetryAfter reads an HTTP Retry-After value: delay seconds or an HTTP
// date. Delays are capped at MaxBackoff so a receiver cannot park a message
// for days.
func parseRetryAfter(value string, now time.Time) (time.Duration, bool) {
	value = strings.TrimSpace(value)
	if value == "" {
		return 0, false
	}
	var delay time.Duration
	if seconds, err := strconv.ParseUint(value, 10, 32); err == nil {
		delay = time.Duration(seconds) * time.Second
	} else if at, err := http.ParseTime(value); err == nil {
		delay = max(at.Sub(now), 0)
	} else {
		return 0, false
	}
	return min(delay, MaxBackoff), true
}
