package notify

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestSignatureHeaderKnownAnswer(t *testing.T) {
	// Computed independently:
	//   printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac secret
	got := SignatureHeader([]byte("secret"), time.Unix(1700000000, 0), []byte(`{"a":1}`))
	want := "t=1700000000,v1=" + knownV1
	if got != want {
		t.Errorf("SignatureHeader = %q, want %q", got, want)
	}
}

func TestVerifySignature(t *testing.T) {
	secret := []byte("secret")
	body := []byte(`{"a":1}`)
	at := time.Unix(1700000000, 0)
	valid := "t=1700000000,v1=" + knownV1
	other := SignatureHeader([]byte("old secret"), at, body)
	_, otherV1, _ := strings.Cut(other, "v1=")

	tests := []struct {
		name      string
		header    string
		body      []byte
		now       time.Time
		tolerance time.Duration
		want      error // nil for success
	}{
		{"valid", valid, body, at, 0, nil},
		{"valid, spaces after commas", "t=1700000000, v1=" + knownV1, body, at, 0, nil},
		{"valid, keys in other order", "v1=" + knownV1 + ",t=1700000000", body, at, 0, nil},
		{"valid among rotated secrets", "t=1700000000,v1=" + otherV1 + ",v1=" + knownV1, body, at, 0, nil},
		{"unknown scheme ignored", "t=1700000000,v0=abc,v1=" + knownV1, body, at, 0, nil},
		{"upper-case hex", "t=1700000000,v1=" + strings.ToUpper(knownV1), body, at, 0, nil},
		{"4 min late, default tolerance", valid, body, at.Add(4 * time.Minute), 0, nil},
		{"exactly at tolerance", valid, body, at.Add(time.Minute), time.Minute, nil},
		{"6 min late, default tolerance", valid, body, at.Add(6 * time.Minute), 0, ErrSignatureExpired},
		{"old", valid, body, at.Add(time.Hour), time.Minute, ErrSignatureExpired},
		{"from the future", valid, body, at.Add(-time.Hour), time.Minute, ErrSignatureExpired},
		{"tampered body", valid, []byte(`{"a":2}`), at, 0, ErrSignatureMismatch},
		{"body with whitespace added", valid, []byte(`{"a": 1}`), at, 0, ErrSignatureMismatch},
		{"timestamp changed", "t=1700000001,v1=" + knownV1, body, at, 0, ErrSignatureMismatch},
		{"only another secret", other, body, at, 0, ErrSignatureMismatch},
		{"empty", "", body, at, 0, ErrSignatureMalformed},
		{"no t", "v1=" + knownV1, body, at, 0, ErrSignatureMalformed},
		{"no v1", "t=1700000000", body, at, 0, ErrSignatureMalformed},
		{"two t", "t=1700000000,t=1700000000,v1=" + knownV1, body, at, 0, ErrSignatureMalformed},
		{"negative t", "t=-1700000000,v1=" + knownV1, body, at, 0, ErrSignatureMalformed},
		{"signed t", "t=+1700000000,v1=" + knownV1, body, at, 0, ErrSignatureMalformed},
		{"t too large", "t=99999999999999999999,v1=" + knownV1, body, at, 0, ErrSignatureMalformed},
		{"short v1", "t=1700000000,v1=" + knownV1[:62], body, at, 0, ErrSignatureMalformed},
		{"v1 not hex", "t=1700000000,v1=" + strings.Repeat("zz", 32), body, at, 0, ErrSignatureMalformed},
		{"item without =", "t=1700000000,v1=" + knownV1 + ",junk", body, at, 0, ErrSignatureMalformed},
		{"trailing comma", valid + ",", body, at, 0, ErrSignatureMalformed},
		{"huge header", valid + strings.Repeat(",x=y", 2000), body, at, 0, ErrSignatureMalformed},
		{"max t", "t=9223372036854775807,v1=" + knownV1, body, at, 0, ErrSignatureExpired},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := VerifySignature(secret, tt.header, tt.body, tt.now, tt.tolerance)
			if tt.want == nil {
				if err != nil {
					t.Errorf("VerifySignature = %v, want success", err)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Errorf("VerifySignature = %v, want %v", err, tt.want)
			}
		})
	}

	if err := VerifySignature(nil, valid, body, at, 0); !errors.Is(err, ErrSignatureMismatch) {
		t.Errorf("VerifySignature with no secret = %v, want ErrSignatureMismatch", err)
	}
}

// knownV1 is HMAC-SHA256("secret", `1700000000.{"a":1}`), from openssl.
const knownV1 = "49f24e537407743fa4a0242bb63b94b9a47ee99cbbe071ccd8a22550ae411686"

func FuzzVerifySignature(f *testing.F) {
	f.Add("t=1700000000,v1="+knownV1, []byte(`{"a":1}`))
	f.Add("t=1700000000, v1="+knownV1+",v1=00", []byte(`{}`))
	f.Add("v1=,t=", []byte(nil))
	f.Add("t=1,t=2", []byte("x"))
	f.Add(",,,=", []byte("x"))
	secret := []byte("secret")
	now := time.Unix(1700000000, 0)
	f.Fuzz(func(t *testing.T, header string, body []byte) {
		ts, sigs, err := parseSignatureHeader(header)
		verifyErr := VerifySignature(secret, header, body, now, time.Minute)
		if err != nil {
			if !errors.Is(err, ErrSignatureMalformed) {
				t.Fatalf("parse error %v does not wrap ErrSignatureMalformed", err)
			}
			if !errors.Is(verifyErr, ErrSignatureMalformed) {
				t.Fatalf("header rejected by the parser, but VerifySignature = %v", verifyErr)
			}
			return
		}
		if ts < 0 || len(sigs) == 0 {
			t.Fatalf("parser accepted t=%d with %d signatures", ts, len(sigs))
		}
		for _, s := range sigs {
			if len(s) != 32 {
				t.Fatalf("parser accepted a %d-byte signature", len(s))
			}
		}
		if verifyErr == nil && header != SignatureHeader(secret, now, body) {
			// Accepting anything but what we signed would be a forgery,
			// unless the header merely reformats the genuine signature.
			want := SignatureHeader(secret, time.Unix(ts, 0), body)
			_, wantV1, _ := strings.Cut(want, "v1=")
			if !strings.Contains(strings.ToLower(header), wantV1) {
				t.Fatalf("VerifySignature accepted %q for body %q", header, body)
			}
		}

		// A header we produce for this body always verifies.
		if err := VerifySignature(secret, SignatureHeader(secret, now, body), body, now, time.Minute); err != nil {
			t.Fatalf("own signature rejected: %v", err)
		}
	})
}
