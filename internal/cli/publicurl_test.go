package cli

import (
	"bytes"
	"strings"
	"testing"
)

func TestParsePublicURL(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"", "", true},
		{"https://tend.example.org", "https://tend.example.org", true},
		{"https://tend.example.org/", "https://tend.example.org", true},
		{"https://proxy.example.org:8443/tend/", "https://proxy.example.org:8443/tend", true},
		{"http://127.0.0.1:8080", "http://127.0.0.1:8080", true},
		{"tend.example.org", "", false},
		{"ftp://tend.example.org", "", false},
		{"https://", "", false},
		{"https://:443", "", false},
		{"https://user:pw@tend.example.org", "", false},
		{"https://tend.example.org/?x=1", "", false},
		{"https://tend.example.org/#top", "", false},
		{"https://tend example.org", "", false},
	} {
		got, err := parsePublicURL(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parsePublicURL(%q) = %q, %v; want %q, ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

// A bad --public-url (flag or TEND_PUBLIC_URL) stops serve before it starts anything.
func TestServeRefusesBadPublicURL(t *testing.T) {
	for _, env := range []bool{false, true} {
		var stdout, stderr bytes.Buffer
		args := []string{"--public-url", "tend.example.org", "--data", t.TempDir()}
		if env {
			t.Setenv("TEND_PUBLIC_URL", "tend.example.org")
			args = []string{"--data", t.TempDir()}
		}
		if code := Run(append([]string{"serve"}, args...), &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), "--public-url") {
			t.Errorf("env=%v: exit %d, stderr %q; want 2 naming --public-url", env, code, stderr.String())
		}
	}
}
