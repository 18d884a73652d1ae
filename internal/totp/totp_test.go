package totp

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"hash"
	"net/url"
	"testing"
	"time"
)

// RFC 6238 Appendix B: the seed is the ASCII string repeated to the hash's
// block of key material (20, 32 and 64 bytes), 8 digits, 30 s steps.
func TestRFC6238Vectors(t *testing.T) {
	seeds := map[string][]byte{
		"SHA1":   []byte("12345678901234567890"),
		"SHA256": []byte("12345678901234567890123456789012"),
		"SHA512": []byte("1234567890123456789012345678901234567890123456789012345678901234"),
	}
	hashes := map[string]func() hash.Hash{"SHA1": sha1.New, "SHA256": sha256.New, "SHA512": sha512.New}
	tests := []struct {
		unix int64
		mode string
		want string
	}{
		{59, "SHA1", "94287082"}, {59, "SHA256", "46119246"}, {59, "SHA512", "90693936"},
		{1111111109, "SHA1", "07081804"}, {1111111109, "SHA256", "68084774"}, {1111111109, "SHA512", "25091201"},
		{1111111111, "SHA1", "14050471"}, {1111111111, "SHA256", "67062674"}, {1111111111, "SHA512", "99943326"},
		{1234567890, "SHA1", "89005924"}, {1234567890, "SHA256", "91819424"}, {1234567890, "SHA512", "93441116"},
		{2000000000, "SHA1", "69279037"}, {2000000000, "SHA256", "90698825"}, {2000000000, "SHA512", "38618901"},
		{20000000000, "SHA1", "65353130"}, {20000000000, "SHA256", "77737706"}, {20000000000, "SHA512", "47863826"},
	}
	for _, tc := range tests {
		t.Run(tc.mode+"/"+time.Unix(tc.unix, 0).UTC().Format(time.RFC3339), func(t *testing.T) {
			got := HOTP(hashes[tc.mode], seeds[tc.mode], uint64(Step(time.Unix(tc.unix, 0))), 8)
			if got != tc.want {
				t.Errorf("got %s, want %s", got, tc.want)
			}
		})
	}
}

// RFC 4226 Appendix D: HOTP values of counters 0..9.
func TestRFC4226Vectors(t *testing.T) {
	want := []string{"755224", "287082", "359152", "969429", "338314", "254676", "287922", "162583", "399871", "520489"}
	for i, w := range want {
		if got := HOTP(sha1.New, []byte("12345678901234567890"), uint64(i), 6); got != w {
			t.Errorf("counter %d: got %s, want %s", i, got, w)
		}
	}
}

func TestValidateWindow(t *testing.T) {
	secret := []byte("12345678901234567890")
	now := time.Unix(1111111111, 0) // step 37037037
	code := Generate(secret, now)
	tests := []struct {
		name     string
		codeAt   time.Time
		wantOK   bool
		wantStep int64
	}{
		{"now", now, true, 37037037},
		{"previous step", now.Add(-Period), true, 37037036},
		{"next step", now.Add(Period), true, 37037038},
		{"two steps old", now.Add(-2 * Period), false, 0},
		{"two steps ahead", now.Add(2 * Period), false, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			step, ok := Validate(secret, Generate(secret, tc.codeAt), now)
			if ok != tc.wantOK || (ok && step != tc.wantStep) {
				t.Errorf("Validate = %d, %v; want %d, %v", step, ok, tc.wantStep, tc.wantOK)
			}
		})
	}
	if _, ok := Validate([]byte("another secret......"), code, now); ok {
		t.Error("a code of another secret was accepted")
	}
	if _, ok := Validate(secret, code[:5], now); ok {
		t.Error("a 5-digit prefix was accepted")
	}
}

func TestParseCode(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"123456", "123456", true},
		{" 123 456 ", "123456", true},
		{"123-456", "123456", true},
		{"12345", "", false},
		{"1234567", "", false},
		{"12345a", "", false},
		{"١٢٣٤٥٦", "", false}, // Arabic-Indic digits are not ASCII digits
		{"", "", false},
	}
	for _, tc := range tests {
		got, err := ParseCode(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseCode(%q) = %q, %v; want %q, ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func FuzzParseCode(f *testing.F) {
	for _, s := range []string{"123456", "123 456", "12-34-56", "", "abcdef", "1234567", "\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		code, err := ParseCode(s)
		if err != nil {
			return
		}
		if len(code) != Digits {
			t.Fatalf("ParseCode(%q) = %q: not %d long", s, code, Digits)
		}
		for _, c := range []byte(code) {
			if c < '0' || c > '9' {
				t.Fatalf("ParseCode(%q) = %q: not digits", s, code)
			}
		}
		if again, err := ParseCode(code); err != nil || again != code {
			t.Fatalf("ParseCode is not idempotent on %q", code)
		}
	})
}

func TestURI(t *testing.T) {
	secret := []byte("12345678901234567890")
	u, err := url.Parse(URI("Tend", "ann@ward 7", secret))
	if err != nil {
		t.Fatal(err)
	}
	if u.Scheme != "otpauth" || u.Host != "totp" || u.Path != "/Tend:ann@ward 7" {
		t.Errorf("URI %s: scheme %q host %q path %q", u, u.Scheme, u.Host, u.Path)
	}
	q := u.Query()
	if q.Get("secret") != "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ" || q.Get("issuer") != "Tend" ||
		q.Get("algorithm") != "SHA1" || q.Get("digits") != "6" || q.Get("period") != "30" {
		t.Errorf("URI query %v", q)
	}
	back, err := DecodeSecret("gezd gnbv gy3t qojq gezd gnbv gy3t qojq")
	if err != nil || !bytes.Equal(back, secret) {
		t.Errorf("DecodeSecret: %q, %v", back, err)
	}
}

func TestSealer(t *testing.T) {
	key := bytes.Repeat([]byte{7}, 32)
	s, err := NewSealer(key)
	if err != nil {
		t.Fatal(err)
	}
	secret := NewSecret()
	sealed := s.Seal("ann", secret)
	if bytes.Contains(sealed, secret) {
		t.Fatal("the sealed form contains the secret")
	}
	got, err := s.Open("ann", sealed)
	if err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("Open: %x, %v", got, err)
	}
	other, _ := NewSealer(bytes.Repeat([]byte{8}, 32))
	tampered := bytes.Clone(sealed)
	tampered[len(tampered)-1] ^= 1
	for name, open := range map[string]func() ([]byte, error){
		"other user": func() ([]byte, error) { return s.Open("bob", sealed) },
		"other key":  func() ([]byte, error) { return other.Open("ann", sealed) },
		"tampered":   func() ([]byte, error) { return s.Open("ann", tampered) },
		"truncated":  func() ([]byte, error) { return s.Open("ann", sealed[:10]) },
		"empty":      func() ([]byte, error) { return s.Open("ann", nil) },
	} {
		if _, err := open(); err != ErrUnseal {
			t.Errorf("%s: err %v, want ErrUnseal", name, err)
		}
	}
	if _, err := NewSealer(key[:16]); err == nil {
		t.Error("a 16-byte key was accepted")
	}
}

// FuzzOpen: whatever is in the totp_secret column, Open never panics and
// opens nothing but what Seal made.
func FuzzOpen(f *testing.F) {
	s, _ := NewSealer(bytes.Repeat([]byte{7}, 32))
	good := s.Seal("ann", []byte("12345678901234567890"))
	f.Add(good)
	f.Add([]byte{})
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, sealed []byte) {
		// Seal's nonce is random, so each fuzz worker has its own good
		// seal: anything that opens must be a seal of the one plaintext.
		got, err := s.Open("ann", sealed)
		if err == nil && string(got) != "12345678901234567890" {
			t.Fatalf("opened a forged sealed secret %x as %x", sealed, got)
		}
	})
}

func FuzzDecodeSecret(f *testing.F) {
	f.Add("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ")
	f.Add("gezd gnbv-====")
	f.Fuzz(func(t *testing.T, s string) {
		b, err := DecodeSecret(s)
		if err != nil {
			return
		}
		if back, err := DecodeSecret(EncodeSecret(b)); err != nil || !bytes.Equal(back, b) {
			t.Fatalf("round trip of %q: %x, %v", s, back, err)
		}
	})
}
