package stream

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

func startEmbedded(t *testing.T, dir string) *Stream {
	t.Helper()
	s := New(Config{Durables: testDurables, Dir: dir})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// testDurables are the consumers the tests read with; under interest
// retention they must exist before anything is published.
var testDurables = []string{"order", "retry", "writer", "ext", "verify"}

// collect consumes with durable until want bodies were seen or the timeout.
func collect(t *testing.T, s *Stream, durable string, want int, timeout time.Duration) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var mu sync.Mutex
	var got []string
	err := s.Consume(ctx, durable, 64, func(_ context.Context, msgs [][]byte) error {
		mu.Lock()
		defer mu.Unlock()
		for _, m := range msgs {
			got = append(got, string(m))
		}
		if len(got) >= want {
			cancel()
		}
		return nil
	})
	if err != nil {
		t.Fatalf("Consume: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	return append([]string(nil), got...)
}

func TestEmbeddedDurabilitySettings(t *testing.T) {
	s := startEmbedded(t, t.TempDir())
	jsc := s.ns.JetStreamConfig()
	if jsc == nil || !jsc.SyncAlways {
		t.Fatalf("embedded JetStream SyncAlways = false (config %+v); acknowledged writes could be lost on power failure", jsc)
	}
	if got := s.ns.ClientURL(); s.ns.Addr() != nil {
		t.Fatalf("embedded server listens on %s; want no TCP listener", got)
	}
	info, err := s.js.Stream(context.Background(), StreamName)
	if err != nil {
		t.Fatal(err)
	}
	cfg := info.CachedInfo().Config
	checks := []struct {
		name      string
		got, want any
	}{
		{"storage", cfg.Storage, jetstream.FileStorage},
		{"retention", cfg.Retention, jetstream.LimitsPolicy},
		{"discard", cfg.Discard, jetstream.DiscardNew},
		{"replicas", cfg.Replicas, 1},
		{"duplicates", cfg.Duplicates, 2 * time.Minute},
		{"max age", cfg.MaxAge, 7 * 24 * time.Hour},
		{"max msg size", cfg.MaxMsgSize, int32(MaxMessageSize)},
		{"subjects", fmt.Sprint(cfg.Subjects), "[" + Subjects + "]"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

func TestPublishConsumeInOrder(t *testing.T) {
	reg := prometheus.NewRegistry()
	s := New(Config{Durables: testDurables, Dir: t.TempDir(), Registerer: reg})
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Ready(); err != nil {
		t.Fatalf("Ready: %v", err)
	}
	const n = 300
	for i := range n {
		if err := s.Publish(context.Background(), "tend.readings.x", []byte(strconv.Itoa(i)), fmt.Sprintf("id-%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if got := histogramCount(t, reg, "tend_stream_publish_seconds"); got != n {
		t.Fatalf("tend_stream_publish_seconds count = %d, want %d", got, n)
	}
	got := collect(t, s, "order", n, 20*time.Second)
	if len(got) != n {
		t.Fatalf("consumed %d, want %d", len(got), n)
	}
	for i, g := range got {
		if g != strconv.Itoa(i) {
			t.Fatalf("message %d = %q, want in publish order", i, g)
		}
	}
}

func TestPublishDeduplicatesByMsgID(t *testing.T) {
	s := startEmbedded(t, t.TempDir())
	ctx := context.Background()
	for range 3 {
		if err := s.Publish(ctx, "tend.readings.x", []byte("a"), "same"); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Publish(ctx, "tend.readings.x", []byte("b"), "other"); err != nil {
		t.Fatal(err)
	}
	info, err := s.js.Stream(ctx, StreamName)
	if err != nil {
		t.Fatal(err)
	}
	if got := info.CachedInfo().State.Msgs; got != 2 {
		t.Fatalf("stream holds %d messages, want 2 (duplicates dropped)", got)
	}
}

func TestPublishRejects(t *testing.T) {
	s := startEmbedded(t, t.TempDir())
	ctx := context.Background()
	if err := s.Publish(ctx, "tend.readings.big", make([]byte, 6<<20), "big-ok"); err != nil {
		t.Fatalf("6 MiB message refused: %v", err)
	}
	tests := []struct {
		name    string
		subject string
		size    int
	}{
		{"too large", "tend.readings.big", MaxMessageSize + 1},
		{"subject outside stream", "other.subject", 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := s.Publish(ctx, tt.subject, make([]byte, tt.size), ""); err == nil {
				t.Fatal("Publish succeeded, want error")
			}
		})
	}
}

// TestConsumedMessagesAreRemoved checks compaction: once every durable
// consumer acknowledged a message, the stream no longer keeps it, and what
// one consumer has not yet taken stays.
func TestConsumedMessagesAreRemoved(t *testing.T) {
	s := New(Config{Durables: []string{"writer", "slow"}, Dir: t.TempDir(), CompactInterval: 50 * time.Millisecond})
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	for i := 0; i < 10; i++ {
		if err := s.Publish(ctx, "tend.readings.x", []byte{byte(i)}, ""); err != nil {
			t.Fatal(err)
		}
	}
	if got := collect(t, s, "writer", 10, 10*time.Second); len(got) != 10 {
		t.Fatalf("consumed %d, want 10", len(got))
	}
	time.Sleep(300 * time.Millisecond) // several compaction rounds
	info, err := s.js.Stream(ctx, StreamName)
	if err != nil {
		t.Fatal(err)
	}
	if n := info.CachedInfo().State.Msgs; n != 10 {
		t.Fatalf("stream holds %d messages while consumer \"slow\" has taken none; want 10", n)
	}
	if got := collect(t, s, "slow", 10, 10*time.Second); len(got) != 10 {
		t.Fatalf("slow consumer got %d, want 10", len(got))
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		info, err := s.js.Stream(ctx, StreamName)
		if err != nil {
			t.Fatal(err)
		}
		if n := info.CachedInfo().State.Msgs; n == 0 {
			return
		} else if time.Now().After(deadline) {
			t.Fatalf("stream still holds %d acknowledged messages", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestFullStreamRefusesNewMessages checks the discard-new policy: when
// MaxBytes is reached, publishing fails rather than dropping old messages
// that a consumer may not have stored yet.
func TestFullStreamRefusesNewMessages(t *testing.T) {
	s := New(Config{Durables: testDurables, Dir: t.TempDir(), MaxBytes: 64 << 10})
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	published := 0
	var err error
	for ; published < 1000; published++ {
		if err = s.Publish(ctx, "tend.readings.x", make([]byte, 1024), ""); err != nil {
			break
		}
	}
	if err == nil {
		t.Fatal("a 64 KiB stream accepted 1000 KiB")
	}
	info, ierr := s.js.Stream(ctx, StreamName)
	if ierr != nil {
		t.Fatal(ierr)
	}
	st := info.CachedInfo().State
	if st.FirstSeq != 1 || int(st.Msgs) != published {
		t.Fatalf("stream state first=%d msgs=%d after %d acknowledged publishes; old messages were dropped", st.FirstSeq, st.Msgs, published)
	}
}

func TestNotStarted(t *testing.T) {
	s := New(Config{Durables: testDurables, Dir: t.TempDir()})
	if err := s.Ready(); !errors.Is(err, ErrNotStarted) {
		t.Fatalf("Ready before Start = %v", err)
	}
	if err := s.Publish(context.Background(), "tend.readings.x", nil, ""); !errors.Is(err, ErrNotStarted) {
		t.Fatalf("Publish before Start = %v", err)
	}
	if err := New(Config{}).Start(context.Background()); err == nil {
		t.Fatal("embedded Start without a directory succeeded")
	}
	s2 := startEmbedded(t, t.TempDir())
	s2.Close()
	if err := s2.Ready(); err == nil {
		t.Fatal("Ready after Close = nil")
	}
	if err := s2.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestHandlerErrorRedelivers(t *testing.T) {
	s := startEmbedded(t, t.TempDir())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := s.Publish(ctx, "tend.readings.x", []byte("m"), "m"); err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int32
	err := s.Consume(ctx, "retry", 8, func(_ context.Context, msgs [][]byte) error {
		if calls.Add(1) < 3 {
			return errors.New("store down")
		}
		if len(msgs) != 1 || string(msgs[0]) != "m" {
			t.Errorf("redelivered %q", msgs)
		}
		cancel()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := calls.Load(); got != 3 {
		t.Fatalf("handler called %d times, want 3 (two failures then success)", got)
	}
}

func TestUnackedRedeliveredAfterRestart(t *testing.T) {
	dir := t.TempDir()
	s := New(Config{Durables: testDurables, Dir: dir, AckWait: time.Second})
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := s.Publish(context.Background(), "tend.readings.x", []byte("unacked"), "u"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Consume(ctx, "writer", 8, func(hctx context.Context, _ [][]byte) error {
			close(got)
			<-hctx.Done() // crash before acknowledging
			return hctx.Err()
		})
	}()
	<-got
	s.Close() // the process "dies" with the message delivered but not acked
	cancel()
	<-done

	s2 := New(Config{Durables: testDurables, Dir: dir, AckWait: time.Second})
	if err := s2.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	msgs := collect(t, s2, "writer", 1, 20*time.Second)
	if len(msgs) != 1 || msgs[0] != "unacked" {
		t.Fatalf("after restart got %q, want the unacknowledged message", msgs)
	}
}

func TestExternalNATS(t *testing.T) {
	ns, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoSigs: true, NoLog: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("test server not ready")
	}
	defer func() { ns.Shutdown(); ns.WaitForShutdown() }()

	// External servers default to 3 replicas: a lone server must say so.
	if err := New(Config{Durables: testDurables, URLs: []string{ns.ClientURL()}}).Start(context.Background()); err == nil ||
		!strings.Contains(err.Error(), "--nats-replicas") {
		t.Fatalf("Start with default replicas on one server: err %v, want one naming --nats-replicas", err)
	}
	s := New(Config{Durables: testDurables, URLs: []string{ns.ClientURL()}, Replicas: 1})
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Ready(); err != nil {
		t.Fatal(err)
	}
	// Starting twice against the same server must be idempotent.
	s2 := New(Config{Durables: testDurables, URLs: []string{ns.ClientURL()}, Replicas: 1})
	if err := s2.Start(context.Background()); err != nil {
		t.Fatalf("second Start (update stream): %v", err)
	}
	s2.Close()
	for i := range 5 {
		if err := s.Publish(context.Background(), "tend.readings.ext", []byte{byte('a' + i)}, ""); err != nil {
			t.Fatal(err)
		}
	}
	if got := collect(t, s, "ext", 5, 10*time.Second); fmt.Sprint(got) != "[a b c d e]" {
		t.Fatalf("consumed %q", got)
	}
}

const crashDirEnv = "TEND_STREAM_CRASH_CHILD_DIR"

// TestMain lets the crash test re-execute this binary as a publishing child.
func TestMain(m *testing.M) {
	if dir := os.Getenv(crashDirEnv); dir != "" {
		crashChild(dir)
		return
	}
	os.Exit(m.Run())
}

// crashChild publishes from several goroutines forever, printing each
// acknowledged message body; the parent kills it with SIGKILL.
func crashChild(dir string) {
	s := New(Config{Durables: testDurables, Dir: dir})
	if err := s.Start(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var out sync.Mutex
	w := bufio.NewWriter(os.Stdout)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				body := fmt.Sprintf("g%d-%d", g, i)
				if err := s.Publish(context.Background(), "tend.readings.crash", []byte(body), body); err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(3)
				}
				out.Lock()
				fmt.Fprintln(w, body)
				w.Flush() // the line leaves the process only after the ack
				out.Unlock()
			}
		}()
	}
	wg.Wait()
}

func TestAckedMessagesSurviveKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns a child process")
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashDirEnv+"="+dir)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() }) // never leave the child running
	acked := map[string]bool{}
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		acked[sc.Text()] = true
		if len(acked) == 400 {
			// Kill mid-stream: publishers are in flight right now.
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
		}
	}
	werr := cmd.Wait()
	if len(acked) < 400 {
		t.Fatalf("child acknowledged only %d messages before exiting: %v", len(acked), werr)
	}
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("child did not die of SIGKILL: %v", werr)
	}

	s := startEmbedded(t, dir)
	info, err := s.js.Stream(context.Background(), StreamName)
	if err != nil {
		t.Fatal(err)
	}
	stored := int(info.CachedInfo().State.Msgs)
	if stored < len(acked) {
		t.Fatalf("stream holds %d messages after restart, but %d were acknowledged", stored, len(acked))
	}
	got := collect(t, s, "verify", stored, 30*time.Second)
	present := map[string]bool{}
	for _, g := range got {
		present[g] = true
	}
	var missing []string
	for k := range acked {
		if !present[k] {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		t.Fatalf("%d acknowledged messages lost after kill -9, e.g. %v", len(missing), missing[:min(5, len(missing))])
	}
	t.Logf("acked %d, stored %d after kill -9", len(acked), stored)
}

func histogramCount(t *testing.T, reg *prometheus.Registry, name string) int {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return int(mf.GetMetric()[0].GetHistogram().GetSampleCount())
		}
	}
	t.Fatalf("metric %s not registered", name)
	return 0
}
