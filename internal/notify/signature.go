package notify

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// DefaultSignatureTolerance is how far a signature's timestamp may be from
// the receiver's clock when VerifySignature is given no tolerance.
const DefaultSignatureTolerance = 5 * time.Minute

// maxSignatureHeader bounds the header VerifySignature will parse.
const maxSignatureHeader = 4 << 10

// Signature verification errors, for receivers that answer differently.
var (
	ErrSignatureMalformed = errors.New("signature header malformed")
	ErrSignatureExpired   = errors.New("signature timestamp outside tolerance")
	ErrSignatureMismatch  = errors.New("signature does not match")
)

// SignatureHeader computes the Tend-Signature header value for body sent at
// time at.
//
// Every webhook request carries a header
//
//	Tend-Signature: t=1700000000,v1=49f24e537407743fa4a0242bb63b94b9a47ee99cbbe071ccd8a22550ae411686
//
// where t is the sending time in Unix seconds and v1 is the lower-case hex
// HMAC-SHA256, keyed with the recipient's secret, of the bytes
//
//	<t> "." <raw request body>
//
// (the example is secret "secret" and body {"a":1}). A receiver recomputes
// the HMAC over the body exactly as received, before any JSON parsing,
// compares it in constant time, and rejects a t too far from its own clock
// so that a captured request cannot be replayed later; VerifySignature does
// all of this. The header may hold several v1 entries (while a secret is
// being rotated) and future schemes (v2=…): a receiver accepts if any v1
// matches and ignores keys it does not know. Replays within the tolerance
// window are caught by deduplicating on the Idempotency-Key header.
func SignatureHeader(secret []byte, at time.Time, body []byte) string {
	t := at.Unix()
	return "t=" + strconv.FormatInt(t, 10) + ",v1=" + hex.EncodeToString(signature(secret, t, body))
}

func signature(secret []byte, t int64, body []byte) []byte {
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(strconv.FormatInt(t, 10)))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return mac.Sum(nil)
}

// VerifySignature checks a Tend-Signature header against body as received:
// at least one v1 must be the HMAC of secret over "<t>.<body>", and t must
// be within tolerance of now (either way, so a clock far ahead does not mint
// long-lived requests). A tolerance of zero or less means
// DefaultSignatureTolerance. The errors wrap ErrSignatureMalformed,
// ErrSignatureExpired or ErrSignatureMismatch.
func VerifySignature(secret []byte, header string, body []byte, now time.Time, tolerance time.Duration) error {
	t, candidates, err := parseSignatureHeader(header)
	if err != nil {
		return err
	}
	if tolerance <= 0 {
		tolerance = DefaultSignatureTolerance
	}
	// Compare in seconds: t has no finer resolution, and this avoids
	// overflowing time.Duration for absurd timestamps.
	skew := now.Unix() - t
	if skew < 0 {
		skew = -skew
	}
	if skew < 0 || skew > int64(tolerance/time.Second) {
		return fmt.Errorf("%w: t=%d is %ds from now", ErrSignatureExpired, t, now.Unix()-t)
	}
	if len(secret) == 0 {
		return fmt.Errorf("%w: no secret to verify with", ErrSignatureMismatch)
	}
	want := signature(secret, t, body)
	matched := false
	for _, got := range candidates {
		// Check every candidate so timing does not reveal which matched.
		if hmac.Equal(got, want) {
			matched = true
		}
	}
	if !matched {
		return ErrSignatureMismatch
	}
	return nil
}

// parseSignatureHeader splits "t=…,v1=…[,v1=…][,other=…]" into the
// timestamp and the decoded v1 signatures. Exactly one t is required, and
// at least one well-formed v1.
func parseSignatureHeader(header string) (t int64, v1 [][]byte, err error) {
	if len(header) > maxSignatureHeader {
		return 0, nil, fmt.Errorf("%w: longer than %d bytes", ErrSignatureMalformed, maxSignatureHeader)
	}
	seenT := false
	for item := range strings.SplitSeq(header, ",") {
		key, value, ok := strings.Cut(strings.TrimSpace(item), "=")
		if !ok || key == "" {
			return 0, nil, fmt.Errorf("%w: item %q is not key=value", ErrSignatureMalformed, item)
		}
		switch key {
		case "t":
			if seenT {
				return 0, nil, fmt.Errorf("%w: more than one t", ErrSignatureMalformed)
			}
			seenT = true
			// Digits only: ParseInt would also take a sign.
			if value == "" || strings.TrimLeft(value, "0123456789") != "" {
				return 0, nil, fmt.Errorf("%w: t is not a number of seconds", ErrSignatureMalformed)
			}
			t, err = strconv.ParseInt(value, 10, 64)
			if err != nil {
				return 0, nil, fmt.Errorf("%w: t is out of range", ErrSignatureMalformed)
			}
		case "v1":
			sig, err := hex.DecodeString(value)
			if err != nil || len(sig) != sha256.Size {
				return 0, nil, fmt.Errorf("%w: v1 is not %d hex-encoded bytes", ErrSignatureMalformed, sha256.Size)
			}
			v1 = append(v1, sig)
		}
	}
	if !seenT {
		return 0, nil, fmt.Errorf("%w: no t", ErrSignatureMalformed)
	}
	if len(v1) == 0 {
		return 0, nil, fmt.Errorf("%w: no v1", ErrSignatureMalformed)
	}
	return t, v1, nil
}
