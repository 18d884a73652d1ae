package cli

import (
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestEnvFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tokenFile := write("token", "s3cret-token\n")
	crlfFile := write("crlf", "line\r\n")
	addrFile := write("addr", ":9999\n")
	tests := []struct {
		name    string
		env     map[string]string
		args    []string
		want    string // value of --http
		wantErr string
	}{
		{"default", nil, nil, ":8080", ""},
		{"plain env", map[string]string{"TEND_HTTP": ":7000"}, nil, ":7000", ""},
		{"file env, newline trimmed", map[string]string{"TEND_HTTP_FILE": addrFile}, nil, ":9999", ""},
		{"CRLF trimmed", map[string]string{"TEND_HTTP_FILE": crlfFile}, nil, "line", ""},
		{"command line wins over a file", map[string]string{"TEND_HTTP_FILE": addrFile}, []string{"--http", ":1"}, ":1", ""},
		{"both set is an error", map[string]string{"TEND_HTTP": ":7000", "TEND_HTTP_FILE": addrFile}, nil, "", "both TEND_HTTP and TEND_HTTP_FILE"},
		{"missing file", map[string]string{"TEND_HTTP_FILE": filepath.Join(dir, "nope")}, nil, "", "TEND_HTTP_FILE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			fs := flag.NewFlagSet("t", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			httpAddr := fs.String("http", ":8080", "")
			err := parseFlags(fs, tt.args, io.Discard)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want one mentioning %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if *httpAddr != tt.want {
				t.Fatalf("--http %q, want %q", *httpAddr, tt.want)
			}
		})
	}

	t.Run("secrets", func(t *testing.T) {
		t.Setenv("TEND_BOOTSTRAP_TOKEN_FILE", tokenFile)
		t.Setenv("TEND_SMTP_PASSWORD", "pw")
		keyFile := write("natskey", strings.Repeat("k", 32)+"\n")
		s, err := serveSecrets(keyFile)
		if err != nil {
			t.Fatal(err)
		}
		if s.bootstrapToken != "s3cret-token" || s.smtpPassword != "pw" || s.natsKey != strings.Repeat("k", 32) {
			t.Fatalf("secrets %+v", s)
		}
		// An error names the variable, never the secret.
		t.Setenv("TEND_BOOTSTRAP_TOKEN", "s3cret-token")
		_, err = serveSecrets("")
		if err == nil || strings.Contains(err.Error(), "s3cret") {
			t.Fatalf("both set: %v", err)
		}
	})
	t.Run("NATS key checks", func(t *testing.T) {
		t.Setenv("TEND_NATS_ENCRYPTION_KEY", "k3y-9")
		if _, err := serveSecrets(""); err == nil || strings.Contains(err.Error(), "k3y-9") {
			t.Fatalf("short key: %v", err)
		}
		t.Setenv("TEND_NATS_ENCRYPTION_KEY", strings.Repeat("x", 20))
		if _, err := serveSecrets(write("k2", strings.Repeat("y", 20))); err == nil {
			t.Fatal("key in both the environment and a file accepted")
		}
	})
}
