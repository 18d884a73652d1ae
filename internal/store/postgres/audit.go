package postgres

import (
	"bytes"
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/tendhealth/tend/internal/store"
)

// auditLockKey serialises appends to one schema's audit chain across every
// node sharing the database.
const auditLockKey = `hashtextextended('tend.audit.' || COALESCE(current_schema(), ''), 0)`

// AppendAudit appends one audit entry (see store.AuditStore). The head is
// read inside the transaction after taking a transaction-scoped advisory
// lock, so two nodes never extend the same head.
func (s *Store) AppendAudit(ctx context.Context, build func(store.AuditHead) (store.AuditEntry, error)) (store.AuditEntry, error) {
	var out store.AuditEntry
	err := s.withTx(ctx, "append audit", func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(`+auditLockKey+`)`); err != nil {
			return fmt.Errorf("postgres: take audit lock: %w", err)
		}
		var head store.AuditHead
		err := tx.QueryRow(ctx, `SELECT seq, hash FROM audit_head WHERE id = 1`).Scan(&head.Seq, &head.Hash)
		if err != nil && !isNoRows(err) {
			return fmt.Errorf("postgres: read audit head: %w", err)
		}
		e, err := build(head)
		if err != nil {
			return err
		}
		prev := head.Hash
		if head.Seq == 0 {
			prev = make([]byte, 32)
		}
		if e.Seq != head.Seq+1 || !bytes.Equal(e.PrevHash, prev) || len(e.Hash) == 0 || e.Time.IsZero() {
			return fmt.Errorf("postgres: audit entry %d does not extend the chain at %d", e.Seq, head.Seq)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO audit_log(seq, t_ns, action, subtype, outcome, status, subject, role, org, source, entity, query, prev_hash, hash, purpose)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)`,
			e.Seq, e.Time.UnixNano(), e.Action, e.Subtype, e.Outcome, e.Status, e.Subject, e.Role, e.Org, e.Source, e.Entity, e.Query, e.PrevHash, e.Hash, e.Purpose); err != nil {
			return fmt.Errorf("postgres: insert audit entry: %w", err)
		}
		if len(e.Patients) > 0 {
			idx := make([]int32, len(e.Patients))
			for i := range idx {
				idx[i] = int32(i)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO audit_patients(seq, idx, patient) SELECT $1, i, p FROM unnest($2::int[], $3::text[]) AS u(i, p)`,
				e.Seq, idx, e.Patients); err != nil {
				return fmt.Errorf("postgres: insert audit patients: %w", err)
			}
		}
		if _, err := tx.Exec(ctx, `INSERT INTO audit_head(id, seq, hash) VALUES (1, $1, $2)
			ON CONFLICT (id) DO UPDATE SET seq = EXCLUDED.seq, hash = EXCLUDED.hash`, e.Seq, e.Hash); err != nil {
			return fmt.Errorf("postgres: advance audit head: %w", err)
		}
		out = e
		return nil
	})
	return out, err
}

// AuditHead returns the chain head (zero when the trail is empty).
func (s *Store) AuditHead(ctx context.Context) (store.AuditHead, error) {
	var h store.AuditHead
	err := s.pool.QueryRow(ctx, `SELECT seq, hash FROM audit_head WHERE id = 1`).Scan(&h.Seq, &h.Hash)
	if isNoRows(err) {
		return store.AuditHead{}, nil
	}
	if err != nil {
		return store.AuditHead{}, fmt.Errorf("postgres: audit head: %w", err)
	}
	return h, nil
}

const auditColumns = `seq, t_ns, action, subtype, outcome, status, subject, role, org, source, entity, query, prev_hash, hash, purpose`

// AuditEntries returns the entries q selects, oldest first.
func (s *Store) AuditEntries(ctx context.Context, q store.AuditQuery) ([]store.AuditEntry, error) {
	where := []string{"seq > $1"}
	args := []any{q.AfterSeq}
	add := func(cond string, v any) {
		args = append(args, v)
		where = append(where, fmt.Sprintf(cond, len(args)))
	}
	if q.Patient != "" {
		add("seq IN (SELECT seq FROM audit_patients WHERE patient = $%d)", q.Patient)
	}
	if q.Subject != "" {
		add("subject = $%d", q.Subject)
	}
	if !q.From.IsZero() {
		add("t_ns >= $%d", clampNanos(q.From))
	}
	if !q.To.IsZero() {
		add("t_ns < $%d", clampNanos(q.To))
	}
	query := `SELECT ` + auditColumns + ` FROM audit_log WHERE ` + strings.Join(where, " AND ") + ` ORDER BY seq`
	if q.Limit > 0 {
		query += fmt.Sprintf(" LIMIT %d", q.Limit)
	}
	return s.auditRows(ctx, query, args...)
}

// AuditEntry returns the entry with sequence number seq.
func (s *Store) AuditEntry(ctx context.Context, seq int64) (store.AuditEntry, error) {
	es, err := s.auditRows(ctx, `SELECT `+auditColumns+` FROM audit_log WHERE seq = $1`, seq)
	if err != nil {
		return store.AuditEntry{}, err
	}
	if len(es) == 0 {
		return store.AuditEntry{}, fmt.Errorf("postgres: audit entry %d: %w", seq, store.ErrNotFound)
	}
	return es[0], nil
}

func (s *Store) auditRows(ctx context.Context, query string, args ...any) ([]store.AuditEntry, error) {
	rows, err := s.pool.Query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("postgres: audit entries: %w", err)
	}
	var out []store.AuditEntry
	for rows.Next() {
		var e store.AuditEntry
		var t int64
		var outcome, status int32
		if err := rows.Scan(&e.Seq, &t, &e.Action, &e.Subtype, &outcome, &status, &e.Subject, &e.Role, &e.Org, &e.Source,
			&e.Entity, &e.Query, &e.PrevHash, &e.Hash, &e.Purpose); err != nil {
			rows.Close()
			return nil, fmt.Errorf("postgres: audit entries: %w", err)
		}
		e.Time, e.Outcome, e.Status = fromNanos(t), int(outcome), int(status)
		out = append(out, e)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: audit entries: %w", err)
	}
	if len(out) == 0 {
		return out, nil
	}
	idx := make(map[int64]int, len(out))
	for i, e := range out {
		idx[e.Seq] = i
	}
	prow, err := s.pool.Query(ctx, `SELECT seq, patient FROM audit_patients WHERE seq BETWEEN $1 AND $2 ORDER BY seq, idx`,
		out[0].Seq, out[len(out)-1].Seq)
	if err != nil {
		return nil, fmt.Errorf("postgres: audit patients: %w", err)
	}
	defer prow.Close()
	for prow.Next() {
		var seq int64
		var p string
		if err := prow.Scan(&seq, &p); err != nil {
			return nil, fmt.Errorf("postgres: audit patients: %w", err)
		}
		if i, ok := idx[seq]; ok {
			out[i].Patients = append(out[i].Patients, p)
		}
	}
	if err := prow.Err(); err != nil {
		return nil, fmt.Errorf("postgres: audit patients: %w", err)
	}
	return out, nil
}
