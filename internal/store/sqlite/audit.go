package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/tendhealth/tend/internal/store"
)

// AppendAudit appends one audit entry (see store.AuditStore). The single
// writer connection serialises appends within the process, and SQLite's
// write lock excludes other processes: a transaction that read a head
// another process has since moved cannot commit.
func (s *Store) AppendAudit(ctx context.Context, build func(store.AuditHead) (store.AuditEntry, error)) (store.AuditEntry, error) {
	var out store.AuditEntry
	err := s.withTx(ctx, "append audit", func(tx *sql.Tx) error {
		var head store.AuditHead
		err := tx.QueryRowContext(ctx, `SELECT seq, hash FROM audit_head WHERE id = 1`).Scan(&head.Seq, &head.Hash)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("sqlite: read audit head: %w", err)
		}
		e, err := build(head)
		if err != nil {
			return err
		}
		if err := checkAuditLink(head, e); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO audit_log(seq, t_ns, action, subtype, outcome, status, subject, role, org, source, entity, query, prev_hash, hash, purpose)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			e.Seq, e.Time.UnixNano(), e.Action, e.Subtype, e.Outcome, e.Status, e.Subject, e.Role, e.Org, e.Source, e.Entity, e.Query, e.PrevHash, e.Hash, e.Purpose); err != nil {
			return fmt.Errorf("sqlite: insert audit entry: %w", err)
		}
		for i, p := range e.Patients {
			if _, err := tx.ExecContext(ctx, `INSERT INTO audit_patients(seq, idx, patient) VALUES (?, ?, ?)`, e.Seq, i, p); err != nil {
				return fmt.Errorf("sqlite: insert audit patient: %w", err)
			}
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO audit_head(id, seq, hash) VALUES (1, ?, ?)
			ON CONFLICT(id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash`, e.Seq, e.Hash); err != nil {
			return fmt.Errorf("sqlite: advance audit head: %w", err)
		}
		out = e
		return nil
	})
	return out, err
}

// checkAuditLink refuses an entry that does not extend head.
func checkAuditLink(head store.AuditHead, e store.AuditEntry) error {
	prev := head.Hash
	if head.Seq == 0 {
		prev = make([]byte, 32)
	}
	if e.Seq != head.Seq+1 || !bytes.Equal(e.PrevHash, prev) || len(e.Hash) == 0 || e.Time.IsZero() {
		return fmt.Errorf("sqlite: audit entry %d does not extend the chain at %d", e.Seq, head.Seq)
	}
	return nil
}

// AuditHead returns the chain head (zero when the trail is empty).
func (s *Store) AuditHead(ctx context.Context) (store.AuditHead, error) {
	var h store.AuditHead
	err := s.r.QueryRowContext(ctx, `SELECT seq, hash FROM audit_head WHERE id = 1`).Scan(&h.Seq, &h.Hash)
	if errors.Is(err, sql.ErrNoRows) {
		return store.AuditHead{}, nil
	}
	if err != nil {
		return store.AuditHead{}, fmt.Errorf("sqlite: audit head: %w", err)
	}
	return h, nil
}

const auditColumns = `seq, t_ns, action, subtype, outcome, status, subject, role, org, source, entity, query, prev_hash, hash, purpose`

// AuditEntries returns the entries q selects, oldest first.
func (s *Store) AuditEntries(ctx context.Context, q store.AuditQuery) ([]store.AuditEntry, error) {
	var where []string
	var args []any
	where = append(where, "seq > ?")
	args = append(args, q.AfterSeq)
	if q.Patient != "" {
		where = append(where, "seq IN (SELECT seq FROM audit_patients WHERE patient = ?)")
		args = append(args, q.Patient)
	}
	if q.Subject != "" {
		where = append(where, "subject = ?")
		args = append(args, q.Subject)
	}
	if !q.From.IsZero() {
		where = append(where, "t_ns >= ?")
		args = append(args, clampNanos(q.From))
	}
	if !q.To.IsZero() {
		where = append(where, "t_ns < ?")
		args = append(args, clampNanos(q.To))
	}
	query := `SELECT ` + auditColumns + ` FROM audit_log WHERE ` + strings.Join(where, " AND ") + ` ORDER BY seq`
	if q.Limit > 0 {
		query += fmt.Sprintf(" LIMIT %d", q.Limit)
	}
	return s.auditRows(ctx, query, args...)
}

// AuditEntry returns the entry with sequence number seq.
func (s *Store) AuditEntry(ctx context.Context, seq int64) (store.AuditEntry, error) {
	es, err := s.auditRows(ctx, `SELECT `+auditColumns+` FROM audit_log WHERE seq = ?`, seq)
	if err != nil {
		return store.AuditEntry{}, err
	}
	if len(es) == 0 {
		return store.AuditEntry{}, fmt.Errorf("sqlite: audit entry %d: %w", seq, store.ErrNotFound)
	}
	return es[0], nil
}

func (s *Store) auditRows(ctx context.Context, query string, args ...any) ([]store.AuditEntry, error) {
	rows, err := s.r.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: audit entries: %w", err)
	}
	var out []store.AuditEntry
	for rows.Next() {
		var e store.AuditEntry
		var t int64
		if err := rows.Scan(&e.Seq, &t, &e.Action, &e.Subtype, &e.Outcome, &e.Status, &e.Subject, &e.Role, &e.Org, &e.Source,
			&e.Entity, &e.Query, &e.PrevHash, &e.Hash, &e.Purpose); err != nil {
			rows.Close()
			return nil, fmt.Errorf("sqlite: audit entries: %w", err)
		}
		e.Time = fromNanos(t)
		out = append(out, e)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: audit entries: %w", err)
	}
	if len(out) == 0 {
		return out, nil
	}
	// The patients of the page, in one query over the seq range.
	idx := make(map[int64]int, len(out))
	for i, e := range out {
		idx[e.Seq] = i
	}
	prow, err := s.r.QueryContext(ctx, `SELECT seq, patient FROM audit_patients WHERE seq BETWEEN ? AND ? ORDER BY seq, idx`,
		out[0].Seq, out[len(out)-1].Seq)
	if err != nil {
		return nil, fmt.Errorf("sqlite: audit patients: %w", err)
	}
	defer prow.Close()
	for prow.Next() {
		var seq int64
		var p string
		if err := prow.Scan(&seq, &p); err != nil {
			return nil, fmt.Errorf("sqlite: audit patients: %w", err)
		}
		if i, ok := idx[seq]; ok {
			out[i].Patients = append(out[i].Patients, p)
		}
	}
	if err := prow.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: audit patients: %w", err)
	}
	return out, nil
}
