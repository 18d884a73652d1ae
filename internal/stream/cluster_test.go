package stream

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/tendhealth/tend/internal/stream/natstest"
)

// syncBuffer is a log sink safe for the client's callback goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func startExternal(t *testing.T, cfg Config) (*Stream, error) {
	t.Helper()
	if cfg.Durables == nil {
		cfg.Durables = testDurables
	}
	s := New(cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Start(ctx); err != nil {
		return nil, err
	}
	t.Cleanup(func() { s.Close() })
	return s, nil
}

// TestCluster runs against one three-server cluster, in order: a replica
// count the cluster cannot hold, an update of an existing stream, and
// publishing under load while the stream leader is shut down.
func TestCluster(t *testing.T) {
	c := natstest.StartCluster(t, 3)

	t.Run("more replicas than servers is a clear start error", func(t *testing.T) {
		_, err := startExternal(t, Config{URLs: c.URLs(), Replicas: 5})
		if err == nil {
			t.Fatal("Start with 5 replicas on 3 servers succeeded")
		}
		if !strings.Contains(err.Error(), "--nats-replicas") || !strings.Contains(err.Error(), "5 replicas") {
			t.Fatalf("error does not say what to change: %v", err)
		}
		t.Logf("start error: %v", err)
	})

	t.Run("start updates replicas and max age, keeps positioned consumers", func(t *testing.T) {
		s1, err := startExternal(t, Config{URLs: c.URLs(), Replicas: 1, MaxAge: time.Hour})
		if err != nil {
			t.Fatalf("Start R1: %v", err)
		}
		ctx := context.Background()
		for i := range 5 {
			if err := s1.Publish(ctx, "tend.readings.upd", []byte{byte('a' + i)}, ""); err != nil {
				t.Fatal(err)
			}
		}
		// Position "verify" at sequence 3, as the store writer positions
		// its durable at its acknowledgement floor.
		if _, err := s1.createAt(ctx, s1.js, "verify", 3); err != nil {
			t.Fatal(err)
		}
		s1.Close()

		s2, err := startExternal(t, Config{URLs: c.URLs(), MaxAge: 2 * time.Hour}) // default: 3 replicas
		if err != nil {
			t.Fatalf("Start R3 over R1: %v", err)
		}
		info, err := s2.js.Stream(ctx, StreamName)
		if err != nil {
			t.Fatal(err)
		}
		cfg := info.CachedInfo().Config
		if cfg.Replicas != 3 || cfg.MaxAge != 2*time.Hour {
			t.Fatalf("after update: replicas %d, max age %v; want 3, 2h", cfg.Replicas, cfg.MaxAge)
		}
		cons, err := s2.js.Consumer(ctx, StreamName, "verify")
		if err != nil {
			t.Fatal(err)
		}
		if cc := cons.CachedInfo().Config; cc.DeliverPolicy != jetstream.DeliverByStartSequencePolicy || cc.OptStartSeq != 3 {
			t.Fatalf("Start changed the positioned consumer: deliver %v from %d", cc.DeliverPolicy, cc.OptStartSeq)
		}
		// The stream needs a moment to add the two new replicas; then it
		// must still hold every message.
		var msgs uint64
		waitFor(t, 15*time.Second, "stream has 2 current followers", func() bool {
			st, err := s2.js.Stream(ctx, StreamName)
			if err != nil {
				return false
			}
			msgs = st.CachedInfo().State.Msgs
			ci := st.CachedInfo().Cluster
			current := 0
			for _, r := range ci.Replicas {
				if r.Current {
					current++
				}
			}
			return current == 2
		})
		if got := msgs; got != 5 {
			t.Fatalf("stream holds %d messages after the update, want 5", got)
		}
		if err := s2.js.DeleteStream(ctx, StreamName); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("acknowledged publishes survive losing the stream leader", func(t *testing.T) {
		testServerLossUnderLoad(t, c)
	})
}

func testServerLossUnderLoad(t *testing.T, c *natstest.Cluster) {
	setup, err := startExternal(t, Config{URLs: c.URLs()})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	ctx := context.Background()
	info, err := setup.js.Stream(ctx, StreamName)
	if err != nil {
		t.Fatal(err)
	}
	if got := info.CachedInfo().Config.Replicas; got != 3 {
		t.Fatalf("stream replicas = %d, want 3 (default for external servers)", got)
	}
	setup.Close()
	leader := c.StreamLeader(StreamName)
	if leader == nil {
		t.Fatal("no stream leader")
	}

	// Connected to the leader only: when it goes, the client must find the
	// other servers through what the cluster advertised.
	logs := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s, err := startExternal(t, Config{URLs: []string{leader.ClientURL()}, Logger: log})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}

	const publishers, perPublisher = 8, 250
	var (
		published  atomic.Int64
		afterKill  atomic.Int64 // acknowledged after the leader was shut down
		isKilled   atomic.Bool
		killed     = make(chan struct{})
		mu         sync.Mutex
		acked      = map[string]bool{}
		failures   int
		lastErr    error
		wg         sync.WaitGroup
		giveUpTime = time.Now().Add(40 * time.Second)
	)
	for p := range publishers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perPublisher {
				body := fmt.Sprintf("p%d-%d", p, i)
				// Retry with the same message ID, as a device retries
				// an unacknowledged reading: the duplicate window
				// drops a copy the cluster had stored already.
				for time.Now().Before(giveUpTime) {
					pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
					err := s.Publish(pctx, "tend.readings.load", []byte(body), body)
					cancel()
					if err == nil {
						if isKilled.Load() {
							afterKill.Add(1)
						}
						mu.Lock()
						acked[body] = true
						mu.Unlock()
						break
					}
					mu.Lock()
					failures++
					lastErr = err
					mu.Unlock()
					time.Sleep(20 * time.Millisecond) // pace retries as a device would; not a synchronisation
				}
				published.Add(1)
			}
		}()
	}

	// Shut the stream leader down once a third of the load is stored.
	go func() {
		defer close(killed)
		for published.Load() < publishers*perPublisher/3 {
			time.Sleep(time.Millisecond)
		}
		leader.Shutdown()
		isKilled.Store(true)
	}()
	start := time.Now()
	wg.Wait()
	<-killed
	elapsed := time.Since(start)
	t.Logf("published %d messages from %d goroutines in %v; shut down stream leader %s, the client's only configured server; %d acknowledged after that; %d publish attempts failed and were retried (last error: %v)",
		len(acked), publishers, elapsed.Round(time.Millisecond), leader.Name(), afterKill.Load(), failures, lastErr)
	if afterKill.Load() == 0 {
		t.Fatal("no publish was acknowledged after the leader was shut down; the test did not exercise a fail-over")
	}

	// Every acknowledged message must be read back, each once.
	want := len(acked)
	seen := map[string]int{}
	var lastSeq uint64
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	readStart := time.Now()
	defer func() {
		t.Logf("read back %d distinct messages in %v", len(seen), time.Since(readStart).Round(time.Millisecond))
	}()
	err = s.ConsumeOrdered(cctx, 1, 256, func(_ context.Context, msgs []Msg) error {
		for _, m := range msgs {
			if m.Seq <= lastSeq {
				continue // delivered again after a reset: not a stored duplicate
			}
			lastSeq = m.Seq
			seen[string(m.Data)]++
		}
		if len(seen) >= want {
			cancel()
		}
		return nil
	})
	if err != nil {
		t.Fatalf("ConsumeOrdered: %v", err)
	}
	var lost, duplicated []string
	for body := range acked {
		if seen[body] == 0 {
			lost = append(lost, body)
		}
	}
	for body, n := range seen {
		if n > 1 {
			duplicated = append(duplicated, fmt.Sprintf("%s×%d", body, n))
		}
	}
	if len(lost) > 0 {
		t.Errorf("%d acknowledged messages not read back, e.g. %v", len(lost), lost[:min(5, len(lost))])
		dctx, dcancel := context.WithTimeout(ctx, 5*time.Second)
		defer dcancel()
		if st, err := s.js.Stream(dctx, StreamName); err == nil {
			t.Logf("stream state %+v cluster %+v", st.CachedInfo().State, st.CachedInfo().Cluster)
		} else {
			t.Logf("stream info: %v", err)
		}
		if cons, err := s.js.Consumer(dctx, StreamName, "verify"); err == nil {
			ci := cons.CachedInfo()
			t.Logf("consumer verify: delivered %+v ack floor %+v pending %d waiting %d cluster %+v", ci.Delivered, ci.AckFloor, ci.NumPending, ci.NumWaiting, ci.Cluster)
		} else {
			t.Logf("consumer info: %v", err)
		}
	}
	if len(duplicated) > 0 {
		t.Errorf("%d messages stored more than once despite the same message ID inside the duplicate window, e.g. %v",
			len(duplicated), duplicated[:min(5, len(duplicated))])
	}
	if want != publishers*perPublisher {
		t.Errorf("only %d of %d messages were acknowledged within the retry budget", want, publishers*perPublisher)
	}
	for _, line := range []string{"disconnected from NATS", "reconnected to NATS"} {
		if !strings.Contains(logs.String(), line) {
			t.Errorf("log has no %q line:\n%s", line, logs.String())
		}
	}
	if testing.Verbose() {
		t.Logf("client log:\n%s", logs.String())
	}
}

// waitFor polls cond, which observes a real cluster, until it holds.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting until %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
