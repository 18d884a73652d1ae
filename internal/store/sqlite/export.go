package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/tendhealth/tend/internal/store"
)

const exportJobColumns = `id, owner, org, principal, request, params, state, progress, error, transaction_time, created, expires, lease_until`

func scanExportJob(sc interface{ Scan(...any) error }) (store.ExportJob, error) {
	var (
		j                              store.ExportJob
		state                          string
		txTime, created, expires, ends int64
	)
	if err := sc.Scan(&j.ID, &j.Owner, &j.Org, &j.Principal, &j.Request, &j.Params, &state, &j.Progress, &j.Error,
		&txTime, &created, &expires, &ends); err != nil {
		return store.ExportJob{}, err
	}
	j.State = store.ExportState(state)
	j.TransactionTime, j.Created, j.Expires, j.LeaseUntil = fromNanos(txTime), fromNanos(created), fromNanos(expires), fromNanos(ends)
	return j, nil
}

func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// CreateExportJob stores a new job; an existing id is ErrConflict.
func (s *Store) CreateExportJob(ctx context.Context, j store.ExportJob) error {
	if j.ID == "" {
		return errors.New("sqlite: create export job: empty id")
	}
	res, err := s.w.ExecContext(ctx, `INSERT INTO export_jobs(`+exportJobColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO NOTHING`,
		j.ID, j.Owner, store.OrgOrDefault(j.Org), nonNil(j.Principal), j.Request, nonNil(j.Params), string(j.State), j.Progress, j.Error,
		toNanos(j.TransactionTime), toNanos(j.Created), toNanos(j.Expires), toNanos(j.LeaseUntil))
	if err != nil {
		return fmt.Errorf("sqlite: create export job: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("sqlite: create export job %q: %w", j.ID, store.ErrConflict)
	}
	return nil
}

// ExportJob returns a job.
func (s *Store) ExportJob(ctx context.Context, id string) (store.ExportJob, error) {
	j, err := scanExportJob(s.r.QueryRowContext(ctx, `SELECT `+exportJobColumns+` FROM export_jobs WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return store.ExportJob{}, fmt.Errorf("sqlite: export job %q: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return store.ExportJob{}, fmt.Errorf("sqlite: export job %q: %w", id, err)
	}
	return j, nil
}

// ClaimExportJob leases the oldest queued job or a running one whose lease
// ended; SQLite's single writer makes the claim exclusive.
func (s *Store) ClaimExportJob(ctx context.Context, now time.Time, lease time.Duration) (store.ExportJob, bool, error) {
	var (
		j  store.ExportJob
		ok bool
	)
	err := s.withTx(ctx, "claim export job", func(tx *sql.Tx) error {
		var err error
		j, err = scanExportJob(tx.QueryRowContext(ctx, `SELECT `+exportJobColumns+` FROM export_jobs
			WHERE state = 'queued' OR (state = 'running' AND lease_until < ?) ORDER BY created, id LIMIT 1`, toNanos(now)))
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("sqlite: claim export job: %w", err)
		}
		if j.State == store.ExportRunning {
			if _, err := tx.ExecContext(ctx, `DELETE FROM export_files WHERE job = ?`, j.ID); err != nil {
				return fmt.Errorf("sqlite: claim export job: %w", err)
			}
		}
		j.State, j.LeaseUntil, ok = store.ExportRunning, now.Add(lease), true
		if _, err := tx.ExecContext(ctx, `UPDATE export_jobs SET state = ?, lease_until = ? WHERE id = ?`,
			string(j.State), toNanos(j.LeaseUntil), j.ID); err != nil {
			return fmt.Errorf("sqlite: claim export job: %w", err)
		}
		return nil
	})
	return j, ok, err
}

// UpdateExportJob writes a job's progress fields.
func (s *Store) UpdateExportJob(ctx context.Context, j store.ExportJob) error {
	res, err := s.w.ExecContext(ctx, `UPDATE export_jobs SET state = ?, progress = ?, error = ?, transaction_time = ?, lease_until = ? WHERE id = ?`,
		string(j.State), j.Progress, j.Error, toNanos(j.TransactionTime), toNanos(j.LeaseUntil), j.ID)
	if err != nil {
		return fmt.Errorf("sqlite: update export job: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("sqlite: update export job %q: %w", j.ID, store.ErrNotFound)
	}
	return nil
}

// PutExportFile stores (or replaces) one output file of a job.
func (s *Store) PutExportFile(ctx context.Context, f store.ExportFile) error {
	_, err := s.w.ExecContext(ctx, `INSERT INTO export_files(job, name, type, count, body) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT(job, name) DO UPDATE SET type = excluded.type, count = excluded.count, body = excluded.body`,
		f.Job, f.Name, f.Type, f.Count, nonNil(f.Body))
	if err != nil {
		if isForeignKeyViolation(err) {
			return fmt.Errorf("sqlite: put export file: job %q: %w", f.Job, store.ErrNotFound)
		}
		return fmt.Errorf("sqlite: put export file: %w", err)
	}
	return nil
}

// ExportFile returns one output file with its body.
func (s *Store) ExportFile(ctx context.Context, job, name string) (store.ExportFile, error) {
	f := store.ExportFile{Job: job, Name: name}
	err := s.r.QueryRowContext(ctx, `SELECT type, count, body FROM export_files WHERE job = ? AND name = ?`, job, name).Scan(&f.Type, &f.Count, &f.Body)
	if errors.Is(err, sql.ErrNoRows) {
		return store.ExportFile{}, fmt.Errorf("sqlite: export file %q/%q: %w", job, name, store.ErrNotFound)
	}
	if err != nil {
		return store.ExportFile{}, fmt.Errorf("sqlite: export file: %w", err)
	}
	return f, nil
}

// ExportFiles lists a job's files without bodies.
func (s *Store) ExportFiles(ctx context.Context, job string) ([]store.ExportFile, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT name, type, count FROM export_files WHERE job = ? ORDER BY name`, job)
	if err != nil {
		return nil, fmt.Errorf("sqlite: export files: %w", err)
	}
	defer rows.Close()
	var out []store.ExportFile
	for rows.Next() {
		f := store.ExportFile{Job: job}
		if err := rows.Scan(&f.Name, &f.Type, &f.Count); err != nil {
			return nil, fmt.Errorf("sqlite: export files: %w", err)
		}
		out = append(out, f)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: export files: %w", err)
	}
	return out, nil
}

// DeleteExportJob deletes a job and its files.
func (s *Store) DeleteExportJob(ctx context.Context, id string) error {
	return s.withTx(ctx, "delete export job", func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM export_files WHERE job = ?`, id); err != nil {
			return fmt.Errorf("sqlite: delete export job: %w", err)
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM export_jobs WHERE id = ?`, id)
		if err != nil {
			return fmt.Errorf("sqlite: delete export job: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("sqlite: delete export job %q: %w", id, store.ErrNotFound)
		}
		return nil
	})
}

// DeleteExpiredExportJobs deletes the jobs expired by now.
func (s *Store) DeleteExpiredExportJobs(ctx context.Context, now time.Time) (int, error) {
	var n int64
	err := s.withTx(ctx, "delete expired export jobs", func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM export_files WHERE job IN (SELECT id FROM export_jobs WHERE expires <= ?)`, toNanos(now)); err != nil {
			return fmt.Errorf("sqlite: delete expired export jobs: %w", err)
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM export_jobs WHERE expires <= ?`, toNanos(now))
		if err != nil {
			return fmt.Errorf("sqlite: delete expired export jobs: %w", err)
		}
		n, _ = res.RowsAffected()
		return nil
	})
	return int(n), err
}

// isForeignKeyViolation recognises SQLite's foreign key error (the driver
// reports it as text).
func isForeignKeyViolation(err error) bool {
	return err != nil && strings.Contains(err.Error(), "FOREIGN KEY constraint failed")
}
