package deviceca

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/tendhealth/tend/internal/store"
)

// Defaults of a Watcher.
const (
	DefaultWatchInterval = 5 * time.Second
	// WatchOverlap is how far back each poll looks beyond the previous
	// one, so that a revocation stamped by a machine whose clock is a
	// little behind this node's is still seen.
	WatchOverlap = time.Minute
)

// Watcher closes the connections of devices whose certificates were
// revoked elsewhere (another node, or `tend ca revoke` against the store):
// new handshakes check the store anyway, and this ends connections that
// are already open, within one interval.
type Watcher struct {
	Store interface {
		RevokedDeviceCertsSince(ctx context.Context, since time.Time) ([]store.DeviceCert, error)
	}
	// Kick closes the open connections of a device and says how many.
	Kick     func(device string) int
	Interval time.Duration    // 0: DefaultWatchInterval
	Now      func() time.Time // nil: time.Now
	Logger   *slog.Logger     // nil: slog.Default()

	mu     sync.Mutex
	last   time.Time
	seen   map[string]time.Time // serial → revocation time, within the overlap
	cancel context.CancelFunc
	done   chan struct{}
}

func (w *Watcher) defaults() {
	if w.Interval <= 0 {
		w.Interval = DefaultWatchInterval
	}
	if w.Now == nil {
		w.Now = time.Now
	}
	if w.Logger == nil {
		w.Logger = slog.Default()
	}
}

// Sync takes note of the recent revocations without closing anything:
// connections made before them were checked at their handshake.
func (w *Watcher) Sync(ctx context.Context) error {
	w.defaults()
	w.mu.Lock()
	defer w.mu.Unlock()
	now := w.Now()
	certs, err := w.Store.RevokedDeviceCertsSince(ctx, now.Add(-WatchOverlap))
	if err != nil {
		return fmt.Errorf("read revoked device certificates: %w", err)
	}
	w.seen = make(map[string]time.Time, len(certs))
	for _, c := range certs {
		w.seen[c.Serial] = c.Revoked
	}
	w.last = now
	return nil
}

// Poll closes the connections of devices with a certificate revoked since
// the previous poll (each revocation once) and returns how many closed.
func (w *Watcher) Poll(ctx context.Context) (int, error) {
	w.defaults()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.seen == nil {
		w.seen = make(map[string]time.Time)
	}
	now := w.Now()
	from := w.last.Add(-WatchOverlap)
	certs, err := w.Store.RevokedDeviceCertsSince(ctx, from)
	if err != nil {
		return 0, fmt.Errorf("read revoked device certificates: %w", err)
	}
	closed := 0
	for _, c := range certs {
		if _, ok := w.seen[c.Serial]; ok {
			continue
		}
		w.seen[c.Serial] = c.Revoked
		n := w.Kick(c.Device)
		closed += n
		w.Logger.Info("device certificate revoked; connections closed", "device", c.Device, "serial", c.Serial, "closed_connections", n)
	}
	for s, at := range w.seen { // the next poll starts at now - overlap
		if at.Before(now.Add(-WatchOverlap)) {
			delete(w.seen, s)
		}
	}
	w.last = now
	return closed, nil
}

// Start syncs, then polls every Interval until Close or ctx ends.
func (w *Watcher) Start(ctx context.Context) error {
	if err := w.Sync(ctx); err != nil {
		return err
	}
	ctx, w.cancel = context.WithCancel(context.WithoutCancel(ctx))
	w.done = make(chan struct{})
	go func() {
		defer close(w.done)
		t := time.NewTicker(w.Interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if _, err := w.Poll(ctx); err != nil && ctx.Err() == nil {
					w.Logger.Warn("device certificate revocations not checked; retrying", "err", err)
				}
			}
		}
	}()
	return nil
}

// Close stops polling and waits for a poll in progress.
func (w *Watcher) Close() error {
	if w.cancel == nil {
		return nil
	}
	w.cancel()
	<-w.done
	return nil
}
