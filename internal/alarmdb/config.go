package alarmdb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/tendhealth/tend/internal/alarm"
)

func getCheckpoint(ctx context.Context, q queryer, name string, withSnapshot bool) (alarm.Checkpoint, error) {
	var (
		c                alarm.Checkpoint
		applied, snapSeq int64
		found            bool
	)
	err := q.QueryRowContext(ctx, `SELECT applied FROM checkpoints WHERE name = ?`, name).Scan(&applied)
	switch {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return alarm.Checkpoint{}, fmt.Errorf("alarmdb: checkpoint %s: %w", name, err)
	default:
		found = true
	}
	cols := `snap_seq`
	dst := []any{&snapSeq}
	if withSnapshot {
		cols += `, snapshot`
		dst = append(dst, &c.Snapshot)
	}
	err = q.QueryRowContext(ctx, `SELECT `+cols+` FROM snapshots WHERE name = ?`, name).Scan(dst...)
	switch {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return alarm.Checkpoint{}, fmt.Errorf("alarmdb: checkpoint snapshot %s: %w", name, err)
	default:
		found = true
	}
	if !found {
		return alarm.Checkpoint{}, nil
	}
	c.Name, c.Applied, c.SnapSeq = name, seqFromDB(applied), seqFromDB(snapSeq)
	return c, nil
}

// Checkpoint returns an evaluator's checkpoint (the zero Checkpoint if none).
func (db *DB) Checkpoint(ctx context.Context, name string) (alarm.Checkpoint, error) {
	return getCheckpoint(ctx, db.r, name, true)
}

// Checkpoint returns an evaluator's position as this transaction sees it
// (without the snapshot bytes).
func (t *tx) Checkpoint(name string) (alarm.Checkpoint, error) {
	return getCheckpoint(t.ctx, t.q, name, false)
}

// SetCheckpoint records Applied; Snapshot and SnapSeq are replaced only when
// Snapshot is non-nil.
func (t *tx) SetCheckpoint(c alarm.Checkpoint) error {
	if c.Name == "" {
		return errors.New("alarmdb: set checkpoint: empty name")
	}
	_, err := t.q.ExecContext(t.ctx, `INSERT INTO checkpoints(name, applied) VALUES (?, ?)
		ON CONFLICT(name) DO UPDATE SET applied = excluded.applied`, c.Name, seqToDB(c.Applied))
	if err == nil && c.Snapshot != nil {
		_, err = t.q.ExecContext(t.ctx, `INSERT INTO snapshots(name, snap_seq, snapshot) VALUES (?, ?, ?)
			ON CONFLICT(name) DO UPDATE SET snap_seq = excluded.snap_seq, snapshot = excluded.snapshot`,
			c.Name, seqToDB(c.SnapSeq), c.Snapshot)
	}
	if err != nil {
		return fmt.Errorf("alarmdb: set checkpoint %s: %w", c.Name, err)
	}
	return nil
}

const docColumns = `scope, kind, version, body, author, reason, at`

func scanDoc(row scanner) (alarm.Doc, error) {
	var (
		d  alarm.Doc
		at int64
	)
	if err := row.Scan(&d.Scope, &d.Kind, &d.Version, &d.Body, &d.Author, &d.Reason, &at); err != nil {
		return alarm.Doc{}, err
	}
	d.At = fromNanos(at)
	return d, nil
}

// Doc returns the current version of a document (alarm.ErrNotFound if none).
func (db *DB) Doc(ctx context.Context, scope, kind string) (alarm.Doc, error) {
	d, err := scanDoc(db.r.QueryRowContext(ctx, `SELECT `+docColumns+` FROM docs WHERE scope = ? AND kind = ?
		ORDER BY version DESC LIMIT 1`, scope, kind))
	if errors.Is(err, sql.ErrNoRows) {
		return alarm.Doc{}, fmt.Errorf("alarmdb: doc %s %s: %w", scope, kind, alarm.ErrNotFound)
	}
	if err != nil {
		return alarm.Doc{}, fmt.Errorf("alarmdb: doc %s %s: %w", scope, kind, err)
	}
	return d, nil
}

// DocHistory returns every version of a document, newest first (empty if
// none).
func (db *DB) DocHistory(ctx context.Context, scope, kind string) ([]alarm.Doc, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT `+docColumns+` FROM docs WHERE scope = ? AND kind = ? ORDER BY version DESC`, scope, kind)
	if err != nil {
		return nil, fmt.Errorf("alarmdb: doc history %s %s: %w", scope, kind, err)
	}
	defer rows.Close()
	var out []alarm.Doc
	for rows.Next() {
		d, err := scanDoc(rows)
		if err != nil {
			return nil, fmt.Errorf("alarmdb: doc history %s %s: scan: %w", scope, kind, err)
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("alarmdb: doc history %s %s: %w", scope, kind, err)
	}
	return out, nil
}

// DocsVersion increases with every PutDoc, whatever the document.
func (db *DB) DocsVersion(ctx context.Context) (int64, error) {
	var v int64
	if err := db.r.QueryRowContext(ctx, `SELECT COALESCE(MAX(seq), 0) FROM docs`).Scan(&v); err != nil {
		return 0, fmt.Errorf("alarmdb: docs version: %w", err)
	}
	return v, nil
}

// PutDoc stores a new version of a document and sets d.Version to it
// (previous + 1, starting at 1).
func (db *DB) PutDoc(ctx context.Context, d *alarm.Doc) error {
	if d.Scope == "" || d.Kind == "" {
		return fmt.Errorf("alarmdb: put doc: scope %q and kind %q must be set", d.Scope, d.Kind)
	}
	if err := checkTimes(d.At); err != nil {
		return fmt.Errorf("alarmdb: put doc %s %s: %w", d.Scope, d.Kind, err)
	}
	var version int
	err := db.withTx(ctx, "put doc", func(sqlTx *sql.Tx) error {
		if err := sqlTx.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) + 1 FROM docs WHERE scope = ? AND kind = ?`, d.Scope, d.Kind).Scan(&version); err != nil {
			return fmt.Errorf("alarmdb: put doc %s %s: %w", d.Scope, d.Kind, err)
		}
		if _, err := sqlTx.ExecContext(ctx, `INSERT INTO docs(`+docColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?)`,
			d.Scope, d.Kind, version, d.Body, d.Author, d.Reason, toNanos(d.At)); err != nil {
			return fmt.Errorf("alarmdb: put doc %s %s: %w", d.Scope, d.Kind, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	d.Version = version
	return nil
}

// PutWebhook registers a webhook or replaces the one with the same id.
func (db *DB) PutWebhook(ctx context.Context, w alarm.Webhook) error {
	if w.ID == "" {
		return errors.New("alarmdb: put webhook: empty id")
	}
	if err := checkTimes(w.Created); err != nil {
		return fmt.Errorf("alarmdb: put webhook %s: %w", w.ID, err)
	}
	return db.withTx(ctx, "put webhook", func(sqlTx *sql.Tx) error {
		_, err := sqlTx.ExecContext(ctx, `INSERT INTO webhooks(id, url, secret, created) VALUES (?, ?, ?, ?)
			ON CONFLICT(id) DO UPDATE SET url = excluded.url, secret = excluded.secret, created = excluded.created`,
			w.ID, w.URL, w.Secret, toNanos(w.Created))
		if err != nil {
			return fmt.Errorf("alarmdb: put webhook %s: %w", w.ID, err)
		}
		return nil
	})
}

func scanWebhook(row scanner) (alarm.Webhook, error) {
	var (
		w       alarm.Webhook
		created int64
	)
	if err := row.Scan(&w.ID, &w.URL, &w.Secret, &created); err != nil {
		return alarm.Webhook{}, err
	}
	w.Created = fromNanos(created)
	return w, nil
}

// Webhook returns one webhook (alarm.ErrNotFound if none).
func (db *DB) Webhook(ctx context.Context, id string) (alarm.Webhook, error) {
	w, err := scanWebhook(db.r.QueryRowContext(ctx, `SELECT id, url, secret, created FROM webhooks WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return alarm.Webhook{}, fmt.Errorf("alarmdb: webhook %s: %w", id, alarm.ErrNotFound)
	}
	if err != nil {
		return alarm.Webhook{}, fmt.Errorf("alarmdb: webhook %s: %w", id, err)
	}
	return w, nil
}

// Webhooks lists every webhook, oldest created first.
func (db *DB) Webhooks(ctx context.Context) ([]alarm.Webhook, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT id, url, secret, created FROM webhooks ORDER BY created, id`)
	if err != nil {
		return nil, fmt.Errorf("alarmdb: webhooks: %w", err)
	}
	defer rows.Close()
	var out []alarm.Webhook
	for rows.Next() {
		w, err := scanWebhook(rows)
		if err != nil {
			return nil, fmt.Errorf("alarmdb: webhooks: scan: %w", err)
		}
		out = append(out, w)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("alarmdb: webhooks: %w", err)
	}
	return out, nil
}

// DeleteWebhook removes a webhook (alarm.ErrNotFound if none).
func (db *DB) DeleteWebhook(ctx context.Context, id string) error {
	return db.withTx(ctx, "delete webhook", func(sqlTx *sql.Tx) error {
		res, err := sqlTx.ExecContext(ctx, `DELETE FROM webhooks WHERE id = ?`, id)
		if err != nil {
			return fmt.Errorf("alarmdb: delete webhook %s: %w", id, err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return fmt.Errorf("alarmdb: delete webhook %s: %w", id, err)
		}
		if n == 0 {
			return fmt.Errorf("alarmdb: delete webhook %s: %w", id, alarm.ErrNotFound)
		}
		return nil
	})
}
