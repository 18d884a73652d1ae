// Package notify delivers alarm notifications to people and systems.
//
// The alarm engine writes notifications into a durable outbox; the outbox
// dispatcher hands each one to a Sender from this package and records the
// Receipt or schedules a retry. This package keeps no state of its own: a
// Sender makes one delivery attempt and reports whether a later attempt could
// succeed (any error) or not (an error marked Permanent).
//
// Channels:
//   - Webhook: an HTTP POST of the JSON document, signed with HMAC-SHA256 so
//     the receiver can check it came from Tend (see SignatureHeader and
//     VerifySignature for the scheme).
//   - SMTP: a plain-text e-mail with a Message-ID derived from the message id.
//   - SenderFunc: any other channel (MQTT downlink, server-sent events).
//
// Mux routes a Recipient to the Sender for its Kind.
//
// Every channel carries Message.ID as an idempotency key. Delivery is at
// least once: a receiver that got a message but whose answer was lost will
// see it again with the same ID and should deduplicate on it.
package notify

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"time"
)

// Message is one notification attempt.
type Message struct {
	// ID is the idempotency key: stable across retries and restarts (the
	// outbox row id). Receivers deduplicate on it. It must be non-empty and
	// consist of visible ASCII characters, because it travels in headers.
	ID string
	// Event names what happened, e.g. "alarm.raised", "alarm.escalated",
	// "alarm.resolved". Visible ASCII only.
	Event string
	// Subject is one line for e-mail subjects and push titles. It must carry
	// no PHI beyond what the recipient may see.
	Subject string
	// Body is the JSON document (the alarm), sent as is.
	Body []byte
	// Created is when the notification was created; it is the e-mail Date,
	// so every retry of a message is byte-for-byte the same e-mail.
	Created time.Time
	// Attempt counts tries, 1 for the first.
	Attempt int
}

// Recipient is where a message goes.
type Recipient struct {
	Kind    string // "webhook", "email", "mqtt", …: the key in a Mux
	Address string // URL, e-mail address, device id
	Secret  []byte // webhook signing secret
}

// String describes the recipient without its secret, so that a Recipient
// formatted into a log line or an error never leaks it.
func (r Recipient) String() string {
	return r.Kind + ":" + r.Address
}

// GoString keeps the secret out of %#v as well.
func (r Recipient) GoString() string {
	return fmt.Sprintf("notify.Recipient{Kind:%q, Address:%q, Secret:<%d bytes>}", r.Kind, r.Address, len(r.Secret))
}

// Receipt is the proof of one successful delivery.
type Receipt struct {
	At     time.Time // when the channel accepted the message
	Detail string    // the channel's answer, e.g. "HTTP 200", "250 2.0.0 queued as X", "PUBACK"
}

// Sender makes one delivery attempt. An error marked Permanent means no
// retry can succeed; any other error is worth retrying after Backoff.
type Sender interface {
	Send(ctx context.Context, to Recipient, m Message) (Receipt, error)
}

// SenderFunc adapts a function to Sender, for channels such as the MQTT
// downlink or server-sent events that live in other packages.
type SenderFunc func(ctx context.Context, to Recipient, m Message) (Receipt, error)

// Send calls f.
func (f SenderFunc) Send(ctx context.Context, to Recipient, m Message) (Receipt, error) {
	return f(ctx, to, m)
}

// Mux sends each message with the Sender registered for the recipient's
// Kind. A nil Mux knows no kinds.
type Mux map[string]Sender

// Send routes m to the Sender for to.Kind. An unknown kind is a Permanent
// error: no retry will make a sender appear.
func (mux Mux) Send(ctx context.Context, to Recipient, m Message) (Receipt, error) {
	s, ok := mux[to.Kind]
	if !ok || s == nil {
		return Receipt{}, Permanent(fmt.Errorf("notify: no sender for recipient kind %q", to.Kind))
	}
	return s.Send(ctx, to, m)
}

// permanentError marks an error that retrying cannot fix.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// Permanent marks err as one that retrying cannot fix (410 Gone, 400, a bad
// address, an unknown channel). Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err: err}
}

// IsPermanent reports whether err, or any error it wraps, was marked
// Permanent.
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}

// retryAfterError carries the delay a receiver asked for (HTTP Retry-After).
type retryAfterError struct {
	err   error
	delay time.Duration
}

func (e *retryAfterError) Error() string { return e.err.Error() }
func (e *retryAfterError) Unwrap() error { return e.err }

// RetryAfter reports the delay the receiver asked for before the next
// attempt (an HTTP Retry-After on 429 or 503), if it named one. The
// dispatcher should wait at least this long, and at most MaxBackoff.
func RetryAfter(err error) (time.Duration, bool) {
	var r *retryAfterError
	if errors.As(err, &r) {
		return r.delay, true
	}
	return 0, false
}

// Backoff schedule bounds.
const (
	FirstBackoff = time.Second
	MaxBackoff   = 5 * time.Minute
)

// Backoff is the ceiling of the wait after failed attempt number attempt
// (1 for the first) before the next one: 1s, 2s, 4s, … doubling up to
// MaxBackoff. Attempts below 1 count as 1. It is deterministic; use
// RetryDelay for the jittered wait a dispatcher should actually use.
func Backoff(attempt int) time.Duration {
	if attempt < 1 {
		attempt = 1
	}
	// 2^9 s already exceeds the cap; stopping there also avoids overflow.
	if attempt > 10 {
		return MaxBackoff
	}
	d := FirstBackoff << (attempt - 1)
	return min(d, MaxBackoff)
}

// RetryDelay is the wait after failed attempt number attempt of the message
// with the given id: Backoff(attempt) scaled into [½, 1] by a hash of id
// and attempt. The jitter spreads the retries of many messages that failed
// together (an endpoint outage) without a random source, so that a
// dispatcher restarted mid-schedule computes the same delay again and tests
// can predict it.
func RetryDelay(id string, attempt int) time.Duration {
	ceiling := Backoff(attempt)
	h := fnv.New64a()
	h.Write([]byte(id))
	h.Write([]byte{0})
	h.Write([]byte(strconv.Itoa(attempt)))
	// 1024 steps of jitter are plenty and keep the arithmetic in range.
	fraction := int64(h.Sum64() % 1024)
	half := ceiling / 2
	// Whole milliseconds keep logged delays readable.
	return (half + time.Duration(int64(half)*fraction/1023)).Truncate(time.Millisecond)
}

// validateMessage checks the fields every channel puts in headers.
func validateMessage(m Message) error {
	if m.ID == "" {
		return errors.New("message has no ID")
	}
	if !isVisibleASCII(m.ID) {
		return fmt.Errorf("message ID %q has characters other than visible ASCII", m.ID)
	}
	if m.Event != "" && !isVisibleASCII(m.Event) {
		return fmt.Errorf("message event %q has characters other than visible ASCII", m.Event)
	}
	return nil
}

// isVisibleASCII reports whether s is made only of the characters '!'
// through '~': safe in any header, no spaces, no line breaks.
func isVisibleASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '!' || s[i] > '~' {
			return false
		}
	}
	return true
}
