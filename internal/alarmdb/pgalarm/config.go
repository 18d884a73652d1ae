package pgalarm

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/tendhealth/tend/internal/alarm"
)

func getCheckpoint(ctx context.Context, q querier, name, lock string) (alarm.Checkpoint, error) {
	var (
		c                alarm.Checkpoint
		applied, snapSeq int64
	)
	cols, dst := `name, applied, snap_seq`, []any{&c.Name, &applied, &snapSeq}
	if lock == "" { // outside a transaction: the whole checkpoint
		cols, dst = cols+`, snapshot`, append(dst, &c.Snapshot)
	}
	err := q.QueryRow(ctx, `SELECT `+cols+` FROM alarm_checkpoints WHERE name = $1`+lock, name).Scan(dst...)
	if errors.Is(err, pgx.ErrNoRows) {
		return alarm.Checkpoint{}, nil
	}
	if err != nil {
		return alarm.Checkpoint{}, fmt.Errorf("pgalarm: checkpoint %s: %w", name, err)
	}
	c.Applied, c.SnapSeq = seqFromDB(applied), seqFromDB(snapSeq)
	return c, nil
}

// Checkpoint returns an evaluator's checkpoint (the zero Checkpoint if none).
func (db *DB) Checkpoint(ctx context.Context, name string) (alarm.Checkpoint, error) {
	return getCheckpoint(ctx, db.pool, name, "")
}

// Checkpoint returns an evaluator's position (without the snapshot bytes)
// as this transaction sees it, and locks it until the transaction ends. The service reads the checkpoint
// to skip events applied before; should two nodes ever run one evaluator
// (a partition changing hands), the second waits here for the first to
// commit and then sees its progress, rather than applying the same events
// again and moving the checkpoint back.
func (t *tx) Checkpoint(name string) (alarm.Checkpoint, error) {
	return getCheckpoint(t.ctx, t.q, name, ` FOR UPDATE`)
}

// SetCheckpoint records Applied; Snapshot and SnapSeq are replaced only when
// Snapshot is non-nil. A first checkpoint without a snapshot has SnapSeq 0.
func (t *tx) SetCheckpoint(c alarm.Checkpoint) error {
	if c.Name == "" {
		return errors.New("pgalarm: set checkpoint: empty name")
	}
	var err error
	if c.Snapshot == nil {
		_, err = t.q.Exec(t.ctx, `INSERT INTO alarm_checkpoints(name, applied, snapshot, snap_seq) VALUES ($1, $2, NULL, 0)
			ON CONFLICT (name) DO UPDATE SET applied = excluded.applied`, c.Name, seqToDB(c.Applied))
	} else {
		_, err = t.q.Exec(t.ctx, `INSERT INTO alarm_checkpoints(name, applied, snapshot, snap_seq) VALUES ($1, $2, $3, $4)
			ON CONFLICT (name) DO UPDATE SET applied = excluded.applied, snapshot = excluded.snapshot, snap_seq = excluded.snap_seq`,
			c.Name, seqToDB(c.Applied), c.Snapshot, seqToDB(c.SnapSeq))
	}
	if err != nil {
		return fmt.Errorf("pgalarm: set checkpoint %s: %w", c.Name, err)
	}
	return nil
}

const docColumns = `scope, kind, version, body, author, reason, at`

func scanDoc(row pgx.Row) (alarm.Doc, error) {
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
	d, err := scanDoc(db.pool.QueryRow(ctx, `SELECT `+docColumns+` FROM alarm_docs WHERE scope = $1 AND kind = $2
		ORDER BY version DESC LIMIT 1`, scope, kind))
	if errors.Is(err, pgx.ErrNoRows) {
		return alarm.Doc{}, fmt.Errorf("pgalarm: doc %s %s: %w", scope, kind, alarm.ErrNotFound)
	}
	if err != nil {
		return alarm.Doc{}, fmt.Errorf("pgalarm: doc %s %s: %w", scope, kind, err)
	}
	return d, nil
}

// DocHistory returns every version of a document, newest first (empty if
// none).
func (db *DB) DocHistory(ctx context.Context, scope, kind string) ([]alarm.Doc, error) {
	rows, err := db.pool.Query(ctx, `SELECT `+docColumns+` FROM alarm_docs WHERE scope = $1 AND kind = $2 ORDER BY version DESC`, scope, kind)
	if err != nil {
		return nil, fmt.Errorf("pgalarm: doc history %s %s: %w", scope, kind, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (alarm.Doc, error) { return scanDoc(r) })
	if err != nil {
		return nil, fmt.Errorf("pgalarm: doc history %s %s: %w", scope, kind, err)
	}
	return out, nil
}

// DocsVersion increases with every PutDoc, whatever the document, in the
// order the PutDocs committed.
func (db *DB) DocsVersion(ctx context.Context) (int64, error) {
	var v int64
	if err := db.pool.QueryRow(ctx, `SELECT version FROM alarm_docs_version`).Scan(&v); err != nil {
		return 0, fmt.Errorf("pgalarm: docs version: %w", err)
	}
	return v, nil
}

// PutDoc stores a new version of a document and sets d.Version to it
// (previous + 1, starting at 1). Concurrent PutDocs, from any node, run one
// after the other: each first bumps the single docs version row.
func (db *DB) PutDoc(ctx context.Context, d *alarm.Doc) error {
	if d.Scope == "" || d.Kind == "" {
		return fmt.Errorf("pgalarm: put doc: scope %q and kind %q must be set", d.Scope, d.Kind)
	}
	if err := checkTimes(d.At); err != nil {
		return fmt.Errorf("pgalarm: put doc %s %s: %w", d.Scope, d.Kind, err)
	}
	var version int
	err := db.withTx(ctx, "put doc", func(pgTx pgx.Tx) error {
		if _, err := pgTx.Exec(ctx, `UPDATE alarm_docs_version SET version = version + 1`); err != nil {
			return fmt.Errorf("pgalarm: put doc %s %s: bump version: %w", d.Scope, d.Kind, err)
		}
		// The row lock above is held to commit, so this maximum is current.
		err := pgTx.QueryRow(ctx, `INSERT INTO alarm_docs(`+docColumns+`)
			SELECT $1, $2, COALESCE(MAX(version), 0) + 1, $3, $4, $5, $6 FROM alarm_docs WHERE scope = $1 AND kind = $2
			RETURNING version`,
			d.Scope, d.Kind, d.Body, d.Author, d.Reason, toNanos(d.At)).Scan(&version)
		if err != nil {
			return fmt.Errorf("pgalarm: put doc %s %s: %w", d.Scope, d.Kind, err)
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
		return errors.New("pgalarm: put webhook: empty id")
	}
	if err := checkTimes(w.Created); err != nil {
		return fmt.Errorf("pgalarm: put webhook %s: %w", w.ID, err)
	}
	_, err := db.pool.Exec(ctx, `INSERT INTO alarm_webhooks(id, url, secret, created) VALUES ($1, $2, $3, $4)
		ON CONFLICT (id) DO UPDATE SET url = excluded.url, secret = excluded.secret, created = excluded.created`,
		w.ID, w.URL, w.Secret, toNanos(w.Created))
	if err != nil {
		return fmt.Errorf("pgalarm: put webhook %s: %w", w.ID, err)
	}
	return nil
}

func scanWebhook(row pgx.Row) (alarm.Webhook, error) {
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
	w, err := scanWebhook(db.pool.QueryRow(ctx, `SELECT id, url, secret, created FROM alarm_webhooks WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return alarm.Webhook{}, fmt.Errorf("pgalarm: webhook %s: %w", id, alarm.ErrNotFound)
	}
	if err != nil {
		return alarm.Webhook{}, fmt.Errorf("pgalarm: webhook %s: %w", id, err)
	}
	return w, nil
}

// Webhooks lists every webhook, oldest created first.
func (db *DB) Webhooks(ctx context.Context) ([]alarm.Webhook, error) {
	rows, err := db.pool.Query(ctx, `SELECT id, url, secret, created FROM alarm_webhooks ORDER BY created, id`)
	if err != nil {
		return nil, fmt.Errorf("pgalarm: webhooks: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (alarm.Webhook, error) { return scanWebhook(r) })
	if err != nil {
		return nil, fmt.Errorf("pgalarm: webhooks: %w", err)
	}
	return out, nil
}

// DeleteWebhook removes a webhook (alarm.ErrNotFound if none).
func (db *DB) DeleteWebhook(ctx context.Context, id string) error {
	tag, err := db.pool.Exec(ctx, `DELETE FROM alarm_webhooks WHERE id = $1`, id)
	if err != nil {
		return fmt.Errorf("pgalarm: delete webhook %s: %w", id, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("pgalarm: delete webhook %s: %w", id, alarm.ErrNotFound)
	}
	return nil
}
