// Package lease shares named pieces of work (the rule evaluator's
// partitions, the store writer) among the Tend nodes connected to one NATS
// JetStream, and moves them when a node stops.
//
// Leases are keys of a JetStream key-value bucket whose entries expire after
// TTL unless renewed. A node takes a free lease with an atomic create, keeps
// it by updating it at the revision it last wrote (so a lease taken over by
// another node cannot be renewed by the old one), and gives it up by
// deleting it at that revision. Every node also writes a heartbeat key; the
// live nodes decide, by rendezvous hashing, which node should hold each
// lease, so leases spread evenly and only the leases of a node that joined
// or left move. A node holding a lease that should be another live node's
// hands it over (Config.Release runs first, so the work can save its state).
//
// A lease says who should do the work, not who alone can: a node paused
// longer than TTL may still act for a moment after another took over. The
// work itself must tolerate that (the evaluator fences with its checkpoints:
// an alarm event at or below the recorded position is never applied twice).
package lease

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Bucket is the key-value bucket holding the leases.
const Bucket = "tend-leases"

const (
	defaultTTL   = 4 * time.Second
	nodePrefix   = "node."
	leasePrefix  = "lease."
	opTimeout    = 2 * time.Second
	maxNodeIDLen = 64
)

// Config configures a Table.
type Config struct {
	JetStream jetstream.JetStream
	Node      string   // this node's id: stable across restarts, [A-Za-z0-9_-]
	Names     []string // the leases shared out, [A-Za-z0-9_-] each
	Replicas  int      // bucket replicas; 0 means 1
	// TTL is how long a lease outlives its holder's last renewal; 0 means
	// 4 s. Leases are renewed every TTL/4.
	TTL time.Duration
	// Acquired runs (on the table's goroutine) after a lease is taken;
	// Release runs before one is given up voluntarily, and Lost after one
	// was found taken or expired. The callbacks must not block for long: a
	// lease not renewed within TTL is lost.
	Acquired func(name string)
	Release  func(name string)
	Lost     func(name string)
	Logger   *slog.Logger
}

// Table holds this node's leases. Methods are safe for concurrent use.
type Table struct {
	cfg Config
	log *slog.Logger

	mu     sync.Mutex
	kv     jetstream.KeyValue
	held   map[string]uint64 // lease name -> revision this node wrote
	nodes  []string          // live nodes at the last refresh, sorted
	hbRev  uint64
	cancel context.CancelFunc
	done   chan struct{}
}

// New returns an unstarted Table; it has no side effects.
func New(cfg Config) *Table {
	if cfg.TTL <= 0 {
		cfg.TTL = defaultTTL
	}
	if cfg.Replicas <= 0 {
		cfg.Replicas = 1
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Table{cfg: cfg, log: log, held: map[string]uint64{}}
}

// ValidName reports whether s can be a node id or lease name.
func ValidName(s string) bool {
	if s == "" || len(s) > maxNodeIDLen {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// Start creates the bucket if needed, takes this node's share of the leases
// once, and keeps renewing and rebalancing in the background until Close.
func (t *Table) Start(ctx context.Context) error {
	if t.cfg.JetStream == nil {
		return errors.New("lease: JetStream is required")
	}
	if !ValidName(t.cfg.Node) {
		return fmt.Errorf("lease: node id %q must be 1-%d letters, digits, '-' or '_'", t.cfg.Node, maxNodeIDLen)
	}
	for _, n := range t.cfg.Names {
		if !ValidName(n) {
			return fmt.Errorf("lease: name %q must be letters, digits, '-' or '_'", n)
		}
	}
	kv, err := t.cfg.JetStream.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:   Bucket,
		History:  1,
		TTL:      t.cfg.TTL,
		Replicas: t.cfg.Replicas,
		Storage:  jetstream.FileStorage,
	})
	if err != nil {
		return fmt.Errorf("lease: create bucket %s: %w", Bucket, err)
	}
	t.mu.Lock()
	t.kv = kv
	t.mu.Unlock()
	t.round(ctx)
	ctx, t.cancel = context.WithCancel(context.WithoutCancel(ctx))
	t.done = make(chan struct{})
	go t.loop(ctx)
	return nil
}

// Close stops renewing and gives up every lease held (after Release), so
// other nodes take over at once instead of after TTL.
func (t *Table) Close() error {
	if t.cancel == nil {
		return nil
	}
	t.cancel()
	<-t.done
	ctx, cancel := context.WithTimeout(context.Background(), 2*opTimeout)
	defer cancel()
	held := t.Held()
	for _, name := range held {
		t.giveUp(ctx, name)
	}
	if len(held) > 0 {
		t.log.Info("leases handed over", "node", t.cfg.Node, "leases", len(held))
	}
	t.mu.Lock()
	rev := t.hbRev
	t.mu.Unlock()
	if rev != 0 {
		_ = t.kv.Delete(ctx, nodePrefix+t.cfg.Node, jetstream.LastRevision(rev))
	}
	return nil
}

// Holds reports whether this node holds the lease now.
func (t *Table) Holds(name string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	_, ok := t.held[name]
	return ok
}

// Held lists the leases this node holds, sorted.
func (t *Table) Held() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]string, 0, len(t.held))
	for n := range t.held {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// Nodes lists the live nodes seen at the last renewal, sorted.
func (t *Table) Nodes() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Clone(t.nodes)
}

func (t *Table) loop(ctx context.Context) {
	defer close(t.done)
	tick := time.NewTicker(t.cfg.TTL / 4)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		t.round(ctx)
	}
}

// round renews what is held, refreshes the live nodes, and takes or hands
// over leases so that each is held by its preferred live node.
func (t *Table) round(ctx context.Context) {
	before := len(t.Held())
	defer func() {
		if after := len(t.Held()); after != before {
			t.log.Info("leases moved", "node", t.cfg.Node, "held", after, "before", before, "nodes", len(t.Nodes()))
		}
	}()
	t.heartbeat(ctx)
	for _, name := range t.Held() {
		t.renew(ctx, name)
	}
	nodes, err := t.liveNodes(ctx)
	if err != nil {
		t.log.Warn("lease: list live nodes", "err", err)
		return
	}
	t.mu.Lock()
	t.nodes = nodes
	t.mu.Unlock()
	for _, name := range t.cfg.Names {
		want := Preferred(nodes, name)
		switch held := t.Holds(name); {
		case held && want != t.cfg.Node && want != "":
			t.giveUp(ctx, name)
		case !held && (want == t.cfg.Node || !t.holderAlive(ctx, name, nodes)):
			t.take(ctx, name)
		}
	}
}

func (t *Table) heartbeat(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	rev, err := t.kv.Put(ctx, nodePrefix+t.cfg.Node, []byte(time.Now().UTC().Format(time.RFC3339)))
	if err != nil {
		t.log.Warn("lease: heartbeat", "err", err)
		return
	}
	t.mu.Lock()
	t.hbRev = rev
	t.mu.Unlock()
}

func (t *Table) liveNodes(ctx context.Context) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	l, err := t.kv.ListKeysFiltered(ctx, nodePrefix+">")
	if err != nil {
		if errors.Is(err, jetstream.ErrNoKeysFound) {
			return nil, nil
		}
		return nil, err
	}
	var out []string
	for k := range l.Keys() {
		out = append(out, strings.TrimPrefix(k, nodePrefix))
	}
	slices.Sort(out)
	return out, nil
}

// holderAlive reports whether the lease is held by a live node; a lease
// held by no one, or by a node whose heartbeat expired, may be taken by any
// node (its preferred node may not have seen it free yet).
func (t *Table) holderAlive(ctx context.Context, name string, nodes []string) bool {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	e, err := t.kv.Get(ctx, leasePrefix+name)
	if err != nil {
		return false
	}
	_, alive := slices.BinarySearch(nodes, string(e.Value()))
	return alive
}

func (t *Table) take(ctx context.Context, name string) {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	key := leasePrefix + name
	rev, err := t.kv.Create(ctx, key, []byte(t.cfg.Node))
	if errors.Is(err, jetstream.ErrKeyExists) {
		// Ours from before a restart (same node id): take it back now
		// rather than waiting for it to expire.
		e, gerr := t.kv.Get(ctx, key)
		if gerr != nil || string(e.Value()) != t.cfg.Node {
			return
		}
		rev, err = t.kv.Update(ctx, key, []byte(t.cfg.Node), e.Revision())
	}
	if err != nil {
		if !errors.Is(err, jetstream.ErrKeyExists) {
			t.log.Debug("lease: take", "lease", name, "err", err)
		}
		return
	}
	t.mu.Lock()
	t.held[name] = rev
	t.mu.Unlock()
	t.log.Debug("lease taken", "lease", name, "node", t.cfg.Node)
	if t.cfg.Acquired != nil {
		t.cfg.Acquired(name)
	}
}

func (t *Table) renew(ctx context.Context, name string) {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	t.mu.Lock()
	rev := t.held[name]
	t.mu.Unlock()
	next, err := t.kv.Update(ctx, leasePrefix+name, []byte(t.cfg.Node), rev)
	if err == nil {
		t.mu.Lock()
		t.held[name] = next
		t.mu.Unlock()
		return
	}
	var apiErr *jetstream.APIError
	if ctx.Err() != nil || !(errors.As(err, &apiErr) || errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyNotFound)) {
		// The server did not answer: the lease may still be ours; the
		// next round tries again (it expires if this goes on past TTL).
		t.log.Warn("lease: renew", "lease", name, "err", err)
		return
	}
	// Expired or taken over: another node may be doing the work already.
	t.mu.Lock()
	delete(t.held, name)
	t.mu.Unlock()
	t.log.Warn("lease lost", "lease", name, "node", t.cfg.Node, "err", err)
	if t.cfg.Lost != nil {
		t.cfg.Lost(name)
	}
}

// giveUp hands a lease over: Release first (the work saves its state), then
// the key is deleted at the revision this node wrote.
func (t *Table) giveUp(ctx context.Context, name string) {
	t.mu.Lock()
	rev, ok := t.held[name]
	delete(t.held, name)
	t.mu.Unlock()
	if !ok {
		return
	}
	if t.cfg.Release != nil {
		t.cfg.Release(name)
	}
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	if err := t.kv.Delete(ctx, leasePrefix+name, jetstream.LastRevision(rev)); err != nil {
		t.log.Debug("lease: give up", "lease", name, "err", err) // it expires instead
	}
	t.log.Debug("lease handed over", "lease", name, "node", t.cfg.Node)
}

// Preferred is the live node that should hold the lease: the highest
// hash of node and lease name (rendezvous hashing), "" if there is none.
func Preferred(nodes []string, name string) string {
	best, bestH := "", uint64(0)
	for _, n := range nodes {
		h := fnv.New64a()
		h.Write([]byte(n))
		h.Write([]byte{0})
		h.Write([]byte(name))
		if v := mix(h.Sum64()); best == "" || v > bestH {
			best, bestH = n, v
		}
	}
	return best
}

// mix is splitmix64's finaliser: FNV alone spreads names that differ in
// one character poorly.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}
