package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCertsDev(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	var out, errb bytes.Buffer
	if code := Run([]string{"certs", "dev", "--out", dir, "--host", "tend.example,10.1.2.3"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	for _, f := range []string{"ca.pem", "ca-key.pem", "server.pem", "server-key.pem", "client.pem", "client-key.pem"} {
		st, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(f, "-key.pem") && st.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v", f, st.Mode().Perm())
		}
	}
	if !strings.Contains(out.String(), "--tls-cert") {
		t.Errorf("output does not say how to use the files:\n%s", out.String())
	}
	errb.Reset()
	if code := Run([]string{"certs", "dev", "--out", dir}, &out, &errb); code != 2 || !strings.Contains(errb.String(), "--force") {
		t.Fatalf("second run: exit %d, %q", code, errb.String())
	}
	if code := Run([]string{"certs", "dev", "--out", dir, "--force"}, &out, &errb); code != 0 {
		t.Fatalf("--force: exit %d", code)
	}
	for _, args := range [][]string{{"certs"}, {"certs", "prod"}, {"certs", "dev"}} {
		if code := Run(args, &out, &errb); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
}
