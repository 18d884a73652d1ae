package lease

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tendhealth/tend/internal/stream/natstest"
)

const testTTL = time.Second

func names(n int) []string {
	var out []string
	for i := range n {
		out = append(out, fmt.Sprintf("rules-%02d", i))
	}
	return out
}

type events struct {
	mu  sync.Mutex
	log []string
}

func (e *events) add(what, node, name string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.log = append(e.log, what+" "+node+" "+name)
}

func startTable(t *testing.T, url, node string, ev *events) *Table {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	tb := New(Config{JetStream: js, Node: node, Names: names(16), TTL: testTTL,
		Acquired: func(n string) { ev.add("acquired", node, n) },
		Release:  func(n string) { ev.add("release", node, n) },
		Lost:     func(n string) { ev.add("lost", node, n) },
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := tb.Start(ctx); err != nil {
		t.Fatal(err)
	}
	return tb
}

// owners maps each lease to the tables that hold it.
func owners(tables map[string]*Table) map[string][]string {
	out := map[string][]string{}
	for _, node := range slices.Sorted(maps.Keys(tables)) {
		for _, n := range tables[node].Held() {
			out[n] = append(out[n], node)
		}
	}
	return out
}

// waitBalanced waits until every lease is held by exactly its preferred
// node among tables, and checks the share is not lopsided.
func waitBalanced(t *testing.T, tables map[string]*Table) map[string][]string {
	t.Helper()
	live := slices.Sorted(maps.Keys(tables))
	deadline := time.Now().Add(6 * testTTL)
	for {
		o := owners(tables)
		ok := len(o) == 16
		for name, hs := range o {
			ok = ok && len(hs) == 1 && hs[0] == Preferred(live, name)
		}
		if ok {
			count := map[string]int{}
			for _, hs := range o {
				count[hs[0]]++
			}
			for _, node := range live {
				if count[node] < 16/len(live)/2 {
					t.Errorf("%s holds %d of 16 leases among %d nodes", node, count[node], len(live))
				}
			}
			return o
		}
		if time.Now().After(deadline) {
			t.Fatalf("leases not shared out after %v: %v", 6*testTTL, o)
		}
		time.Sleep(50 * time.Millisecond) // a real server's expiry: no clock to inject
	}
}

func TestLeasesMoveWhenNodesJoinAndLeave(t *testing.T) {
	ns := natstest.StartServer(t)
	ev := &events{}
	tables := map[string]*Table{"a": startTable(t, ns.ClientURL(), "a", ev)}
	if got := len(tables["a"].Held()); got != 16 {
		t.Fatalf("a lone node holds %d of 16 leases after Start", got)
	}
	tables["b"] = startTable(t, ns.ClientURL(), "b", ev)
	tables["c"] = startTable(t, ns.ClientURL(), "c", ev)
	before := waitBalanced(t, tables)

	// A clean stop hands over at once (Release before the key goes).
	if err := tables["c"].Close(); err != nil {
		t.Fatal(err)
	}
	delete(tables, "c")
	after := waitBalanced(t, tables)
	for name, hs := range before {
		if hs[0] != "c" && after[name][0] != hs[0] {
			t.Errorf("%s moved from %s to %s although its holder stayed", name, hs[0], after[name][0])
		}
	}
	ev.mu.Lock()
	for name, hs := range before {
		if hs[0] == "c" && !slices.Contains(ev.log, "release c "+name) {
			t.Errorf("c gave up %s without Release", name)
		}
	}
	ev.mu.Unlock()
}

func TestCrashedNodesLeasesExpireToOthers(t *testing.T) {
	ns := natstest.StartServer(t)
	ev := &events{}
	tables := map[string]*Table{
		"a": startTable(t, ns.ClientURL(), "a", ev),
		"b": startTable(t, ns.ClientURL(), "b", ev),
	}
	before := waitBalanced(t, tables)
	// A crash: renewals stop, nothing is given up.
	tables["b"].cancel()
	<-tables["b"].done
	crashed := tables["b"]
	delete(tables, "b")
	start := time.Now()
	waitBalanced(t, tables)
	took := time.Since(start)
	if took > 4*testTTL {
		t.Errorf("leases of a crashed node took %v to move (TTL %v)", took, testTTL)
	}
	ev.mu.Lock()
	for name, hs := range before {
		if hs[0] == "b" && slices.Contains(ev.log, "release b "+name) {
			t.Errorf("crashed node released %s", name)
		}
	}
	ev.mu.Unlock()

	// The crashed node comes back to life: its first renewal finds each
	// lease taken and reports it lost.
	crashed.round(context.Background())
	if h := crashed.Held(); len(h) != 0 {
		t.Errorf("a node whose leases expired still holds %v", h)
	}
	ev.mu.Lock()
	defer ev.mu.Unlock()
	for name, hs := range before {
		if hs[0] == "b" && !slices.Contains(ev.log, "lost b "+name) {
			t.Errorf("no Lost for %s after the takeover", name)
		}
	}
}

func TestRestartedNodeTakesItsLeasesBack(t *testing.T) {
	ns := natstest.StartServer(t)
	ev := &events{}
	a := startTable(t, ns.ClientURL(), "a", ev)
	a.cancel() // crash: the keys stay until they expire
	<-a.done
	start := time.Now()
	a2 := startTable(t, ns.ClientURL(), "a", ev)
	if got := len(a2.Held()); got != 16 {
		t.Fatalf("restarted node holds %d of its 16 leases after Start", got)
	}
	if time.Since(start) >= testTTL {
		t.Errorf("restart waited for expiry")
	}
}

func TestValidName(t *testing.T) {
	for s, want := range map[string]bool{"node-1": true, "a_b": true, "": false, "a.b": false, "a b": false, "a>": false, "*": false} {
		if got := ValidName(s); got != want {
			t.Errorf("ValidName(%q) = %v", s, got)
		}
	}
}
