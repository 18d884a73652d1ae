package notify

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	tests := []struct {
		attempt int
		want    time.Duration
	}{
		{-3, time.Second},
		{0, time.Second},
		{1, time.Second},
		{2, 2 * time.Second},
		{3, 4 * time.Second},
		{4, 8 * time.Second},
		{8, 128 * time.Second},
		{9, 256 * time.Second},
		{10, 5 * time.Minute},
		{11, 5 * time.Minute},
		{64, 5 * time.Minute},
		{1 << 30, 5 * time.Minute},
	}
	for _, tt := range tests {
		if got := Backoff(tt.attempt); got != tt.want {
			t.Errorf("Backoff(%d) = %v, want %v", tt.attempt, got, tt.want)
		}
	}
}

func TestRetryDelay(t *testing.T) {
	// Pinned values: a change to the jitter formula shows up here.
	pinned := []struct {
		id      string
		attempt int
		want    time.Duration
	}{
		{"42", 1, 668 * time.Millisecond},
		{"42", 2, 1610 * time.Millisecond},
		{"outbox-17", 5, 13317 * time.Millisecond},
		{"outbox-17", 12, 3*time.Minute + 43020*time.Millisecond},
	}
	for _, tt := range pinned {
		if got := RetryDelay(tt.id, tt.attempt); got != tt.want {
			t.Errorf("RetryDelay(%q, %d) = %v, want %v (deterministic)", tt.id, tt.attempt, got, tt.want)
		}
	}

	for attempt := 1; attempt <= 12; attempt++ {
		ceiling := Backoff(attempt)
		distinct := map[time.Duration]bool{}
		for i := range 200 {
			id := fmt.Sprintf("outbox-%d", i)
			d := RetryDelay(id, attempt)
			if d < ceiling/2 || d > ceiling {
				t.Fatalf("RetryDelay(%q, %d) = %v, want within [%v, %v]", id, attempt, d, ceiling/2, ceiling)
			}
			distinct[d] = true
		}
		// The point of jitter: messages that failed together spread out.
		if len(distinct) < 50 {
			t.Errorf("attempt %d: only %d distinct delays for 200 messages", attempt, len(distinct))
		}
	}
}

func TestPermanent(t *testing.T) {
	base := errors.New("410 Gone")
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"plain", base, false},
		{"marked", Permanent(base), true},
		{"marked then wrapped", fmt.Errorf("outbox row 7: %w", Permanent(base)), true},
		{"retry-after is not permanent", &retryAfterError{err: base, delay: time.Second}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := IsPermanent(tt.err); got != tt.want {
				t.Errorf("IsPermanent(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
	if Permanent(nil) != nil {
		t.Error("Permanent(nil) is not nil")
	}
	if err := Permanent(base); !errors.Is(err, base) || err.Error() != base.Error() {
		t.Errorf("Permanent(base) = %v, want the same text and to wrap base", err)
	}
}

func TestMux(t *testing.T) {
	var got []string
	record := func(name string) SenderFunc {
		return func(_ context.Context, to Recipient, m Message) (Receipt, error) {
			got = append(got, name+" "+to.Address+" "+m.ID)
			return Receipt{Detail: name}, nil
		}
	}
	mux := Mux{"webhook": record("webhook"), "mqtt": record("mqtt")}

	tests := []struct {
		kind       string
		wantDetail string
		wantErr    bool
	}{
		{"webhook", "webhook", false},
		{"mqtt", "mqtt", false},
		{"pager", "", true},
		{"", "", true},
	}
	for _, tt := range tests {
		got = nil
		r, err := mux.Send(context.Background(), Recipient{Kind: tt.kind, Address: "a"}, Message{ID: "m1"})
		if tt.wantErr {
			if !IsPermanent(err) {
				t.Errorf("kind %q: err = %v, want a Permanent error", tt.kind, err)
			}
			if len(got) != 0 {
				t.Errorf("kind %q: a sender was called: %v", tt.kind, got)
			}
			continue
		}
		if err != nil || r.Detail != tt.wantDetail || len(got) != 1 || got[0] != tt.kind+" a m1" {
			t.Errorf("kind %q: receipt %+v, err %v, calls %v", tt.kind, r, err, got)
		}
	}

	var none Mux
	if _, err := none.Send(context.Background(), Recipient{Kind: "email"}, Message{ID: "m"}); !IsPermanent(err) {
		t.Errorf("nil Mux: err = %v, want Permanent", err)
	}
}

func TestRecipientFormattingHidesSecret(t *testing.T) {
	r := Recipient{Kind: "webhook", Address: "https://example.org/hook", Secret: []byte("s3cr3t-value")}
	for _, format := range []string{"%v", "%+v", "%s", "%#v"} {
		if text := fmt.Sprintf(format, r); strings.Contains(text, "s3cr3t") {
			t.Errorf("%s shows the secret: %s", format, text)
		}
	}
	if got := fmt.Sprint(r); got != "webhook:https://example.org/hook" {
		t.Errorf("String() = %q", got)
	}
}
