package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Bad parameters are refused before anything starts, naming the flag or
// the field at fault.
func TestSimulateBadInput(t *testing.T) {
	dir := t.TempDir()
	badFile := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(badFile, []byte(`{"scenarios":[{"name":"hypoxia","rate":1},{"name":"fall","share":2}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--scenario", "hypoxya=1"}, `--scenario: scenario "hypoxya": name: unknown scenario`},
		{[]string{"--scenario", badFile}, `scenarios[1].share: must be a fraction from 0 to 1`},
		{[]string{"--scenario", filepath.Join(dir, "missing.json")}, "--scenario: open"},
		{[]string{"--patients", "0"}, "--patients 0: use 1 to 1000000"},
		{[]string{"--setting", "icu"}, `--setting "icu": use ward, home or mixed`},
		{[]string{"--proto", "coap"}, `--proto "coap": use mqtt, http or mllp`},
		{[]string{"--duration", "-1h"}, "--duration -1h0m0s: must be positive"},
		{[]string{"--data", dir, "--token", "x"}, "no listen.json: is Tend running with that data directory?"},
		{[]string{"--http", "127.0.0.1:1", "--speed", "0"}, "--speed 0: against a running Tend only 1 (real time) works"},
		{[]string{"--http", "127.0.0.1:1"}, "--token: an admin API token of the running Tend is needed"},
	}
	for _, tc := range tests {
		var out, errOut bytes.Buffer
		t.Setenv("TEND_BOOTSTRAP_TOKEN", "")
		code := Run(append([]string{"simulate"}, tc.args...), &out, &errOut)
		if code != 2 || !strings.Contains(errOut.String(), tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want %q", tc.args, code, errOut.String(), tc.want)
		}
	}
}
