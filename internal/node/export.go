package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/tendhealth/tend/internal/alarmdb"
	"github.com/tendhealth/tend/internal/archive"
	"github.com/tendhealth/tend/internal/recorder"
	"github.com/tendhealth/tend/internal/store/sqlite"
	"github.com/tendhealth/tend/internal/stream"
)

// drainWait bounds how long Export waits for the stream's backlog to reach
// the store.
const drainWait = 5 * time.Minute

// Export writes an embedded installation (SQLite store in cfg.DataDir) to
// w, for `tend import` into a scale-out store. The installation must be
// stopped; readings still in its stream are stored first, so everything
// that was acknowledged is in the export.
func Export(ctx context.Context, cfg Config, w io.Writer) (archive.Stats, error) {
	cfg = New(cfg).cfg
	if cfg.StoreURL != "" {
		return archive.Stats{}, errors.New("export reads an embedded installation (SQLite in --data); a PostgreSQL store is already shareable")
	}
	if err := checkStopped(cfg.DataDir); err != nil {
		return archive.Stats{}, err
	}
	if _, err := os.Stat(filepath.Join(cfg.DataDir, "tend.db")); err != nil {
		return archive.Stats{}, fmt.Errorf("no Tend installation in %s: %w", cfg.DataDir, err)
	}
	st, err := sqlite.Open(filepath.Join(cfg.DataDir, "tend.db"))
	if err != nil {
		return archive.Stats{}, err
	}
	defer st.Close()
	if err := drainStream(ctx, cfg, st); err != nil {
		return archive.Stats{}, err
	}
	al, err := alarmdb.Open(filepath.Join(cfg.DataDir, "alarms.db"))
	if err != nil {
		return archive.Stats{}, fmt.Errorf("open alarm database: %w", err)
	}
	defer al.Close()
	keyID, err := sealKeyID(cfg.DataDir)
	if err != nil {
		return archive.Stats{}, err
	}
	return archive.Export(ctx, st, al, w, archive.Options{Now: cfg.Now(), SealKeyID: keyID})
}

// sealKeyFile is the data directory's key file second factors are sealed
// under (see signInChecker).
const sealKeyFile = "web-session.key"

// sealKeyID fingerprints dir's web-session.key, "" if it has none; the key
// itself never leaves the directory.
func sealKeyID(dir string) (string, error) {
	if dir == "" {
		return "", nil
	}
	key, err := os.ReadFile(filepath.Join(dir, sealKeyFile))
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read %s: %w", sealKeyFile, err)
	}
	return archive.SealKeyID(key), nil
}

// Import loads an export into the store cfg names (migrating its schema
// first); the store must be new. When cfg.DataDir holds a web-session.key,
// an export whose second factors were sealed under another key is refused:
// the nodes on the new store open them with that file (copy it from the
// exported data directory to each of them).
func Import(ctx context.Context, cfg Config, r io.Reader) (archive.Stats, error) {
	cfg = New(cfg).cfg
	keyID, err := sealKeyID(cfg.DataDir)
	if err != nil {
		return archive.Stats{}, err
	}
	if cfg.StoreURL == "" {
		if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
			return archive.Stats{}, fmt.Errorf("create data directory: %w", err)
		}
	}
	st, err := openStore(ctx, cfg)
	if err != nil {
		return archive.Stats{}, err
	}
	defer st.Close()
	al, err := openAlarmStore(ctx, cfg)
	if err != nil {
		return archive.Stats{}, err
	}
	defer al.Close()
	return archive.Import(ctx, r, st, al, archive.ImportOptions{SealKeyID: keyID})
}

// checkStopped refuses to export a data directory whose node answers.
func checkStopped(dir string) error {
	b, err := os.ReadFile(filepath.Join(dir, "listen.json"))
	if err != nil {
		return nil
	}
	var a Addrs
	if json.Unmarshal(b, &a) != nil || a.HTTP == "" {
		return nil
	}
	c := http.Client{Timeout: time.Second}
	if resp, err := c.Get("http://" + a.HTTP + "/healthz"); err == nil {
		resp.Body.Close()
		return fmt.Errorf("tend serve is running on %s (answering at %s): stop it before exporting", dir, a.HTTP)
	}
	return nil
}

// drainStream stores what the embedded stream still holds for the store
// writer.
func drainStream(ctx context.Context, cfg Config, st *sqlite.Store) error {
	s := stream.New(stream.Config{Dir: filepath.Join(cfg.DataDir, "stream"), Durables: []string{recorder.DefaultDurable}, Logger: cfg.Logger})
	if err := s.Start(ctx); err != nil {
		return fmt.Errorf("open the stream to store its backlog: %w", err)
	}
	defer s.Close()
	rec := &recorder.Recorder{Stream: s, Store: st, Logger: cfg.Logger, Now: cfg.Now}
	if err := rec.Start(ctx); err != nil {
		return err
	}
	defer rec.Close()
	ctx, cancel := context.WithTimeout(ctx, drainWait)
	defer cancel()
	for {
		n, err := s.Pending(ctx, recorder.DefaultDurable)
		if err == nil && n == 0 {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("the stream's backlog did not reach the store (%d messages left): %w", n, errors.Join(err, ctx.Err()))
		}
		time.Sleep(50 * time.Millisecond)
	}
}
