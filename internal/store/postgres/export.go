package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

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

func nonNilBytes(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// CreateExportJob stores a new job; an existing id is ErrConflict.
func (s *Store) CreateExportJob(ctx context.Context, j store.ExportJob) error {
	if j.ID == "" {
		return errors.New("postgres: create export job: empty id")
	}
	tag, err := s.pool.Exec(ctx, `INSERT INTO export_jobs(`+exportJobColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) ON CONFLICT (id) DO NOTHING`,
		j.ID, j.Owner, store.OrgOrDefault(j.Org), nonNilBytes(j.Principal), j.Request, nonNilBytes(j.Params), string(j.State), j.Progress, j.Error,
		toNanos(j.TransactionTime), toNanos(j.Created), toNanos(j.Expires), toNanos(j.LeaseUntil))
	if err != nil {
		return fmt.Errorf("postgres: create export job: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("postgres: create export job %q: %w", j.ID, store.ErrConflict)
	}
	return nil
}

// ExportJob returns a job.
func (s *Store) ExportJob(ctx context.Context, id string) (store.ExportJob, error) {
	j, err := scanExportJob(s.pool.QueryRow(ctx, `SELECT `+exportJobColumns+` FROM export_jobs WHERE id = $1`, id))
	if isNoRows(err) {
		return store.ExportJob{}, fmt.Errorf("postgres: export job %q: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return store.ExportJob{}, fmt.Errorf("postgres: export job %q: %w", id, err)
	}
	return j, nil
}

// ClaimExportJob leases the oldest queued job or a running one whose lease
// ended; SKIP LOCKED lets nodes claim different jobs at the same time.
func (s *Store) ClaimExportJob(ctx context.Context, now time.Time, lease time.Duration) (store.ExportJob, bool, error) {
	var (
		j  store.ExportJob
		ok bool
	)
	err := s.withTx(ctx, "claim export job", func(tx pgx.Tx) error {
		var err error
		j, err = scanExportJob(tx.QueryRow(ctx, `SELECT `+exportJobColumns+` FROM export_jobs
			WHERE state = 'queued' OR (state = 'running' AND lease_until < $1)
			ORDER BY created, id LIMIT 1 FOR UPDATE SKIP LOCKED`, toNanos(now)))
		if isNoRows(err) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("postgres: claim export job: %w", err)
		}
		if j.State == store.ExportRunning {
			if _, err := tx.Exec(ctx, `DELETE FROM export_files WHERE job = $1`, j.ID); err != nil {
				return fmt.Errorf("postgres: claim export job: %w", err)
			}
		}
		j.State, j.LeaseUntil, ok = store.ExportRunning, now.Add(lease), true
		if _, err := tx.Exec(ctx, `UPDATE export_jobs SET state = $1, lease_until = $2 WHERE id = $3`,
			string(j.State), toNanos(j.LeaseUntil), j.ID); err != nil {
			return fmt.Errorf("postgres: claim export job: %w", err)
		}
		return nil
	})
	return j, ok, err
}

// UpdateExportJob writes a job's progress fields.
func (s *Store) UpdateExportJob(ctx context.Context, j store.ExportJob) error {
	tag, err := s.pool.Exec(ctx, `UPDATE export_jobs SET state = $1, progress = $2, error = $3, transaction_time = $4, lease_until = $5 WHERE id = $6`,
		string(j.State), j.Progress, j.Error, toNanos(j.TransactionTime), toNanos(j.LeaseUntil), j.ID)
	if err != nil {
		return fmt.Errorf("postgres: update export job: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("postgres: update export job %q: %w", j.ID, store.ErrNotFound)
	}
	return nil
}

// PutExportFile stores (or replaces) one output file of a job.
func (s *Store) PutExportFile(ctx context.Context, f store.ExportFile) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO export_files(job, name, type, count, body) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (job, name) DO UPDATE SET type = excluded.type, count = excluded.count, body = excluded.body`,
		f.Job, f.Name, f.Type, f.Count, nonNilBytes(f.Body))
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23503" { // foreign_key_violation: the job is gone
		return fmt.Errorf("postgres: put export file: job %q: %w", f.Job, store.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("postgres: put export file: %w", err)
	}
	return nil
}

// ExportFile returns one output file with its body.
func (s *Store) ExportFile(ctx context.Context, job, name string) (store.ExportFile, error) {
	f := store.ExportFile{Job: job, Name: name}
	err := s.pool.QueryRow(ctx, `SELECT type, count, body FROM export_files WHERE job = $1 AND name = $2`, job, name).Scan(&f.Type, &f.Count, &f.Body)
	if isNoRows(err) {
		return store.ExportFile{}, fmt.Errorf("postgres: export file %q/%q: %w", job, name, store.ErrNotFound)
	}
	if err != nil {
		return store.ExportFile{}, fmt.Errorf("postgres: export file: %w", err)
	}
	return f, nil
}

// ExportFiles lists a job's files without bodies.
func (s *Store) ExportFiles(ctx context.Context, job string) ([]store.ExportFile, error) {
	rows, err := s.pool.Query(ctx, `SELECT name, type, count FROM export_files WHERE job = $1 ORDER BY name`, job)
	if err != nil {
		return nil, fmt.Errorf("postgres: export files: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.ExportFile, error) {
		f := store.ExportFile{Job: job}
		return f, r.Scan(&f.Name, &f.Type, &f.Count)
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: export files: %w", err)
	}
	return out, nil
}

// DeleteExportJob deletes a job and its files.
func (s *Store) DeleteExportJob(ctx context.Context, id string) error {
	return s.withTx(ctx, "delete export job", func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM export_files WHERE job = $1`, id); err != nil {
			return fmt.Errorf("postgres: delete export job: %w", err)
		}
		tag, err := tx.Exec(ctx, `DELETE FROM export_jobs WHERE id = $1`, id)
		if err != nil {
			return fmt.Errorf("postgres: delete export job: %w", err)
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("postgres: delete export job %q: %w", id, store.ErrNotFound)
		}
		return nil
	})
}

// DeleteExpiredExportJobs deletes the jobs expired by now.
func (s *Store) DeleteExpiredExportJobs(ctx context.Context, now time.Time) (int, error) {
	var n int64
	err := s.withTx(ctx, "delete expired export jobs", func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM export_files WHERE job IN (SELECT id FROM export_jobs WHERE expires <= $1)`, toNanos(now)); err != nil {
			return fmt.Errorf("postgres: delete expired export jobs: %w", err)
		}
		tag, err := tx.Exec(ctx, `DELETE FROM export_jobs WHERE expires <= $1`, toNanos(now))
		if err != nil {
			return fmt.Errorf("postgres: delete expired export jobs: %w", err)
		}
		n = tag.RowsAffected()
		return nil
	})
	return int(n), err
}
