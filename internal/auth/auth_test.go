package auth

import (
	"net/http/httptest"
	"testing"
)

func TestSecrets(t *testing.T) {
	a, b := NewSecret(), NewSecret()
	if a == b || len(a) < 40 {
		t.Fatalf("secrets not random or too short: %q %q", a, b)
	}
	h := HashSecret(a)
	if !SecretMatches(a, h) {
		t.Fatal("secret does not match its own hash")
	}
	if SecretMatches(b, h) || SecretMatches("", h) || SecretMatches(a, nil) {
		t.Fatal("wrong secret matched")
	}
}

func TestPasswords(t *testing.T) {
	enc := HashPassword("correct horse")
	if !PasswordMatches("correct horse", enc) {
		t.Fatal("password does not match its own hash")
	}
	for _, bad := range []string{"correct horsf", "", "correct horse "} {
		if PasswordMatches(bad, enc) {
			t.Errorf("%q matched", bad)
		}
	}
	for _, enc := range []string{"", "$argon2id$", "$argon2i$v=19$m=65536,t=3,p=2$AAAA$AAAA", "$argon2id$v=19$m=99999999,t=3,p=2$AAAA$AAAA"} {
		if PasswordMatches("x", enc) {
			t.Errorf("malformed hash %q matched", enc)
		}
	}
}

func TestBearerToken(t *testing.T) {
	tests := []struct {
		header, want string
		wantErr      bool
	}{
		{"Bearer abc", "abc", false},
		{"bearer  abc ", "abc", false},
		{"", "", true},
		{"Basic abc", "", true},
		{"Bearer ", "", true},
	}
	for _, tc := range tests {
		r := httptest.NewRequest("GET", "/", nil)
		if tc.header != "" {
			r.Header.Set("Authorization", tc.header)
		}
		got, err := BearerToken(r)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("%q: got %q, %v", tc.header, got, err)
		}
	}
}
