package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tendhealth/tend/internal/store"
	"github.com/tendhealth/tend/internal/store/sqlite"
)

func TestCACommands(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	os.MkdirAll(data, 0o700)
	st, err := sqlite.Open(filepath.Join(data, "tend.db"))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.CreateDevice(t.Context(), &store.Device{ID: "cuff-1", Resource: []byte(`{"resourceType":"Device"}`)}, time.Now()); err != nil {
		t.Fatal(err)
	}
	st.Close()
	keyFile := filepath.Join(dir, "ca.key")
	out := filepath.Join(dir, "out")
	run := func(args ...string) (int, string) {
		t.Helper()
		var o, e bytes.Buffer
		code := Run(append([]string{"ca"}, append(args, "--data", data)...), &o, &e)
		return code, o.String() + e.String()
	}

	steps := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"issue", "--device", "cuff-1", "--ca-key-file", keyFile}, 2, "no such file"},
		{[]string{"init", "--ca-key-file", keyFile, "--out", dir}, 0, "SHA-256 fingerprint"},
		{[]string{"init", "--ca-key-file", keyFile, "--out", dir}, 1, "already has a device CA"},
		{[]string{"init", "--org", "nowhere", "--ca-key-file", keyFile, "--out", dir}, 1, "not found"},
		{[]string{"issue", "--device", "nope", "--ca-key-file", keyFile, "--out", out}, 1, "not found"},
		{[]string{"issue", "--device", "cuff-1", "--ca-key-file", keyFile, "--out", out, "--days", "30"}, 0, "Issued certificate"},
		{[]string{"issue", "--device", "cuff-1", "--ca-key-file", keyFile, "--out", out}, 2, "--force"},
		{[]string{"issue", "--device", "cuff-1", "--ca-key-file", keyFile, "--out", out, "--force"}, 0, "Issued certificate"},
		{[]string{"list", "--device", "cuff-1"}, 0, "valid"},
		{[]string{"revoke"}, 2, "exactly one"},
		{[]string{"revoke", "--device", "cuff-1"}, 0, "revoked"},
		{[]string{"revoke", "--device", "cuff-1"}, 0, "no valid certificate"},
		{[]string{"list", "--device", "cuff-1"}, 0, "revoked 20"},
		{[]string{"revoke", "--serial", "zz"}, 1, "hex"},
		{[]string{"frobnicate"}, 2, "unknown subcommand"},
	}
	for _, s := range steps {
		code, got := run(s.args...)
		if code != s.code || !strings.Contains(got, s.want) {
			t.Fatalf("tend ca %v: exit %d, want %d with %q:\n%s", s.args, code, s.code, s.want, got)
		}
	}
	for f, mode := range map[string]os.FileMode{keyFile: 0o600, filepath.Join(out, "device-key.pem"): 0o600,
		filepath.Join(out, "device.pem"): 0o644, filepath.Join(dir, "device-ca-default.pem"): 0o644} {
		st, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != mode {
			t.Errorf("%s mode %v, want %v", f, st.Mode().Perm(), mode)
		}
	}
	// Another key does not open the CA.
	other := filepath.Join(dir, "other.key")
	os.WriteFile(other, []byte(strings.Repeat("ab", 32)), 0o600)
	if code, got := run("issue", "--device", "cuff-1", "--ca-key-file", other, "--out", out, "--force"); code != 1 || !strings.Contains(got, "does not open") {
		t.Fatalf("wrong key: exit %d: %s", code, got)
	}
}
