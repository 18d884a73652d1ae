package node

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/tendhealth/tend/internal/evaluator"
	"github.com/tendhealth/tend/internal/lease"
	"github.com/tendhealth/tend/internal/recorder"
)

// storeWriterLease names the one node that moves readings from the stream
// into the store: the store writer's durable consumer acknowledges
// cumulatively, so two writers sharing it could acknowledge each other's
// messages.
const storeWriterLease = "store-writer"

// work shares the node's leased work with the other nodes on the same
// NATS: the rule evaluator's partitions and the store writer. Alone, a node
// holds every lease.
type work struct {
	n     *Node
	table *lease.Table

	mu       sync.Mutex
	recorder *recorder.Recorder // non-nil while this node is the store writer
}

// startWork takes this node's share of the leases. Call after the alarms
// (the evaluator) are started; the store writer starts when its lease is
// taken.
func (n *Node) startWork(ctx context.Context) error {
	id, err := nodeID(n.cfg.DataDir)
	if err != nil {
		return err
	}
	js, err := n.stream.JetStream()
	if err != nil {
		return err
	}
	w := &work{n: n}
	n.work = w
	w.table = lease.New(lease.Config{JetStream: js, Node: id, Names: append(append(evaluator.PartNames(), storeWriterLease), n.cfg.HL7Forward.leases()...),
		Replicas: n.stream.Replicas(), Acquired: w.acquired, Release: w.release, Lost: w.release, Logger: n.cfg.Logger})
	if err := w.table.Start(ctx); err != nil {
		return fmt.Errorf("share work with other nodes: %w", err)
	}
	n.cfg.Logger.Info("sharing work", "node", id, "nodes", len(w.table.Nodes()), "leases_held", len(w.table.Held()))
	return nil
}

func (w *work) acquired(name string) {
	if name == hl7ForwarderLease {
		w.n.startForwarder()
		return
	}
	if name != storeWriterLease {
		w.n.alarms.evaluator.Acquire(name)
		return
	}
	r := w.n.newRecorder()
	if err := r.Start(context.Background()); err != nil {
		w.n.cfg.Logger.Error("start store writer", "err", err)
		return
	}
	w.mu.Lock()
	w.recorder = r
	w.mu.Unlock()
}

// release stops leased work, handed over or lost alike: the evaluator saves
// a part's state first when it can, the store writer finishes its batch.
func (w *work) release(name string) {
	if name == hl7ForwarderLease {
		w.n.stopForwarder()
		return
	}
	if name != storeWriterLease {
		w.n.alarms.evaluator.Release(name)
		return
	}
	w.mu.Lock()
	r := w.recorder
	w.recorder = nil
	w.mu.Unlock()
	if r != nil {
		r.Close()
	}
}

// close hands every lease over (so other nodes take over at once) and
// stops the store writer.
func (w *work) close() error {
	if w == nil {
		return nil
	}
	return w.table.Close()
}

// nodeID is this node's lease identity, kept in the data directory so a
// restarted node takes its own leases back at once.
func nodeID(dir string) (string, error) {
	path := filepath.Join(dir, "node-id")
	b, err := os.ReadFile(path)
	if err == nil {
		id := strings.TrimSpace(string(b))
		if !lease.ValidName(id) {
			return "", fmt.Errorf("node id in %s is not valid (letters, digits, '-' or '_'); delete the file to get a new one", path)
		}
		return id, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("read node id: %w", err)
	}
	host, _ := os.Hostname()
	var rnd [4]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return "", err
	}
	id := sanitizeID(host) + "-" + hex.EncodeToString(rnd[:])
	if err := os.WriteFile(path, []byte(id+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("write node id: %w", err)
	}
	return id, nil
}

// sanitizeID keeps the host name readable in lease values within the
// allowed characters.
func sanitizeID(host string) string {
	var b strings.Builder
	for _, c := range host {
		if b.Len() >= 40 {
			break
		}
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' {
			b.WriteRune(c)
		}
	}
	if b.Len() == 0 {
		return "tend"
	}
	return b.String()
}
