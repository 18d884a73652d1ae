package node_test

import (
	"context"
	"fmt"
	"math/rand"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tendhealth/tend/internal/node"
)

// serveChild starts `tend serve` as a child process on free ports and waits
// until it is ready.
func serveChild(t *testing.T, dir string, args ...string) (*exec.Cmd, node.Addrs) {
	t.Helper()
	os.Remove(filepath.Join(dir, "listen.json"))
	args = append([]string{"--data", dir, "--http", "127.0.0.1:0", "--mqtt", "127.0.0.1:0", "--mllp", "off", "--log-level", "warn"}, args...)
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "TEND_TEST_CHILD=serve", "TEND_BOOTSTRAP_TOKEN="+testToken)
	var logs strings.Builder
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := os.Stat(filepath.Join(dir, "listen.json")); err == nil {
			a := readListen(t, dir)
			if resp, err := http.Get("http://" + a.HTTP + "/readyz"); err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					return cmd, a
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	cmd.Process.Kill()
	cmd.Wait()
	t.Fatalf("tend serve did not become ready:\n%s", logs.String())
	return nil, node.Addrs{}
}

// TestCrashSafety kills `tend serve` with SIGKILL at random moments while
// MQTT clients publish with QoS 1, and checks that every reading whose
// PUBACK arrived is stored, exactly once, after restart.
func TestCrashSafety(t *testing.T) {
	if testing.Short() {
		t.Skip("kills and restarts a server several times; skipped with -short")
	}
	dir := t.TempDir()
	rounds := 5
	var e enrolled
	var seq atomic.Int64 // reading index; reading i has time base + i ms
	var base time.Time   // after the binding began
	var mu sync.Mutex
	acked := map[int64]bool{}
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	const perMsg = 10

	for round := 0; round < rounds; round++ {
		cmd, addrs := serveChild(t, dir)
		c := api{t: t, base: "http://" + addrs.HTTP, token: testToken}
		if round == 0 {
			e = enrol(c, "crash")
			base = time.Now().Add(time.Second).Truncate(time.Second)
			time.Sleep(time.Until(base))
		}
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		for conn := 0; conn < 3; conn++ {
			cl, err := mqttConnect(t, addrs.MQTT, e.device, e.secret)
			if err != nil {
				t.Fatalf("round %d: connect: %v", round, err)
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer cl.Disconnect(0)
				inflight := make(chan struct{}, 8)
				for ctx.Err() == nil {
					inflight <- struct{}{}
					first := seq.Add(perMsg) - perMsg
					tok := cl.Publish("tend/v1/devices/"+e.device+"/obs", 1, false, senmlHR(base.Add(time.Duration(first)*10*time.Microsecond), perMsg, 60))
					go func() {
						defer func() { <-inflight }()
						if tok.WaitTimeout(20*time.Second) && tok.Error() == nil {
							mu.Lock()
							for i := first; i < first+perMsg; i++ {
								acked[i] = true
							}
							mu.Unlock()
						}
					}()
					if !cl.IsConnectionOpen() {
						return
					}
				}
			}()
		}
		time.Sleep(time.Duration(300+rng.Intn(900)) * time.Millisecond)
		if err := cmd.Process.Kill(); err != nil { // SIGKILL
			t.Fatal(err)
		}
		cmd.Wait()
		cancel()
		wg.Wait()
	}
	mu.Lock()
	nAcked := len(acked)
	mu.Unlock()
	if nAcked == 0 {
		t.Fatal("no reading was acknowledged; the test proves nothing")
	}

	cmd, addrs := serveChild(t, dir)
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	c := api{t: t, base: "http://" + addrs.HTTP, token: testToken}
	// The store catches up on the stream's backlog after the restart: wait
	// until every acknowledged reading is there (stored ones that were never
	// acknowledged also count towards the total, so the total alone proves
	// nothing).
	var stored map[string]int
	missing := 0
	deadline := time.Now().Add(90 * time.Second)
	for {
		stored = storedTimes(c, e.patient)
		missing = 0
		for i := range acked {
			ts := base.Add(time.Duration(i) * 10 * time.Microsecond).UTC()
			if stored[ts.Format(time.RFC3339Nano)] == 0 {
				missing++
			}
		}
		if missing == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Second)
	}
	dups := 0
	for _, n := range stored {
		if n > 1 {
			dups++
		}
	}
	if dl := c.must(200, "GET", "/api/v1/deadletters?limit=5", "", nil)["deadletters"].([]any); len(dl) > 0 {
		t.Errorf("payloads were dead-lettered, so their PUBACK did not mean stored: %v", dl[0])
	}
	t.Logf("%d rounds: %d readings acknowledged, %d stored (unacknowledged ones may be stored too)", rounds, nAcked, len(stored))
	if missing > 0 {
		t.Errorf("%d acknowledged readings are missing after kill -9", missing)
	}
	if dups > 0 {
		t.Errorf("%d readings stored more than once", dups)
	}
}

// storedTimes counts the stored observations of a patient by effective time.
func storedTimes(c api, patient string) map[string]int {
	stored := map[string]int{}
	for offset := 0; ; offset += 1000 {
		b := c.must(200, "GET", fmt.Sprintf("/fhir/Observation?patient=%s&_count=1000&_offset=%d&_sort=date", patient, offset), "", nil)
		entries, _ := b["entry"].([]any)
		for _, x := range entries {
			r := x.(map[string]any)["resource"].(map[string]any)
			stored[r["effectiveDateTime"].(string)]++
		}
		if len(entries) < 1000 {
			return stored
		}
	}
}
