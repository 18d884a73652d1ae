package cli

import (
	"bytes"
	"encoding/json"
	"flag"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestUnknownCommand(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := Run([]string{"frobnicate"}, &out, &errOut); code != 2 || !strings.Contains(errOut.String(), `unknown command "frobnicate"`) {
		t.Fatalf("exit %d, stderr %q", code, errOut.String())
	}
	if code := Run(nil, &out, &errOut); code != 2 {
		t.Fatalf("no command: exit %d", code)
	}
}

func TestVersionAndHelp(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := Run([]string{"version"}, &out, &errOut); code != 0 || !strings.HasPrefix(out.String(), "tend ") {
		t.Fatalf("version: %d %q", code, out.String())
	}
	out.Reset()
	errOut.Reset()
	if code := Run([]string{"help", "serve"}, &out, &errOut); code != 0 || !strings.Contains(out.String(), "-nats-url") {
		t.Fatalf("help serve: %d %q", code, out.String())
	}
}

func TestFlagsOverrideEnvironment(t *testing.T) {
	t.Setenv("TEND_HTTP", ":9999")
	t.Setenv("TEND_NATS_URL", "nats://a:4222")
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	httpAddr := fs.String("http", ":8080", "")
	nats := fs.String("nats-url", "", "")
	mqtt := fs.String("mqtt", ":1883", "")
	if err := parseFlags(fs, []string{"--http", ":7070"}, nil); err != nil {
		t.Fatal(err)
	}
	if *httpAddr != ":7070" || *nats != "nats://a:4222" || *mqtt != ":1883" {
		t.Fatalf("http %q nats %q mqtt %q", *httpAddr, *nats, *mqtt)
	}
}

func TestServeRejectsBadConfiguration(t *testing.T) {
	for _, args := range [][]string{
		{"serve", "--log-level", "loud"},
		{"serve", "extra-arg"},
		{"serve", "--no-such-flag"},
	} {
		var out, errOut bytes.Buffer
		if code := Run(args, &out, &errOut); code != 2 || errOut.Len() == 0 {
			t.Errorf("%v: exit %d, stderr %q", args, code, errOut.String())
		}
	}
	var out, errOut bytes.Buffer
	dir := t.TempDir()
	args := []string{"serve", "--data", dir, "--http", "127.0.0.1:0", "--mqtt", "off", "--mllp", "off", "--store", "postgres://u:pw@127.0.0.1:1/x?connect_timeout=2"}
	if code := Run(args, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), "--store") || strings.Contains(errOut.String(), "pw") {
		t.Fatalf("postgres store: exit %d, stderr %q", code, errOut.String())
	}
}

// TestServeFirstStart runs `tend serve` through the CLI: with no bootstrap
// token it prints a one-time admin password, writes listen.json with only
// the enabled listeners, and stops cleanly on SIGTERM.
func TestServeFirstStart(t *testing.T) {
	t.Setenv("TEND_BOOTSTRAP_TOKEN", "")
	dir := t.TempDir()
	var out, errOut syncBuffer
	done := make(chan int)
	go func() {
		done <- Run([]string{"serve", "--data", dir, "--http", "127.0.0.1:0", "--mqtt", "127.0.0.1:0", "--mllp", "off"}, &out, &errOut)
	}()
	var listen map[string]string
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, err := os.ReadFile(filepath.Join(dir, "listen.json"))
		if err == nil && json.Unmarshal(b, &listen) == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no listen.json; stderr:\n%s", errOut.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.HasPrefix(listen["http"], "127.0.0.1:") || !strings.HasPrefix(listen["mqtt"], "127.0.0.1:") {
		t.Errorf("listen.json %v", listen)
	}
	if _, ok := listen["mllp"]; ok {
		t.Errorf("disabled listener in listen.json: %v", listen)
	}
	if !strings.Contains(out.String(), "username: admin") || !strings.Contains(out.String(), "password: ") {
		t.Errorf("no one-time password printed:\n%s", out.String())
	}
	pw := strings.Fields(strings.SplitN(out.String(), "password: ", 2)[1])[0]
	if strings.Contains(errOut.String(), pw) {
		t.Error("the one-time password appears in the log")
	}
	syscall.Kill(syscall.Getpid(), syscall.SIGTERM)
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("exit %d; stderr:\n%s", code, errOut.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not stop on SIGTERM")
	}
}

// TestServePortInUse: a busy port is a clear error naming the flag, and a
// failed first start does not spend the one-time admin password.
func TestServePortInUse(t *testing.T) {
	t.Setenv("TEND_BOOTSTRAP_TOKEN", "")
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	dir := t.TempDir()
	var out, errOut bytes.Buffer
	code := Run([]string{"serve", "--data", dir, "--http", "127.0.0.1:0", "--mqtt", busy.Addr().String(), "--mllp", "off"}, &out, &errOut)
	if code != 1 || !strings.Contains(errOut.String(), "--mqtt "+busy.Addr().String()) || !strings.Contains(errOut.String(), "already in use") {
		t.Fatalf("exit %d, stderr %q", code, errOut.String())
	}
	if strings.Contains(out.String(), "password") {
		t.Fatalf("a failed start printed (and so used up) the admin password:\n%s", out.String())
	}
}

// TestMigrate brings an empty data directory's databases to the current
// schema, twice (idempotent), and refuses a bad store URL without echoing
// its password.
func TestMigrate(t *testing.T) {
	dir := t.TempDir()
	for i := 0; i < 2; i++ {
		var out, errOut bytes.Buffer
		if code := Run([]string{"migrate", "--data", dir}, &out, &errOut); code != 0 || !strings.Contains(out.String(), "schema up to date") {
			t.Fatalf("run %d: exit %d, out %q, err %q", i, code, out.String(), errOut.String())
		}
	}
	for _, db := range []string{"tend.db", "alarms.db"} {
		if _, err := os.Stat(filepath.Join(dir, db)); err != nil {
			t.Errorf("%s not created: %v", db, err)
		}
	}
	var out, errOut bytes.Buffer
	if code := Run([]string{"migrate", "--store", "postgres://u:pw-secret@127.0.0.1:1/x?connect_timeout=2"}, &out, &errOut); code != 1 || strings.Contains(errOut.String(), "pw-secret") {
		t.Fatalf("bad store: exit %d, stderr %q", code, errOut.String())
	}
}
