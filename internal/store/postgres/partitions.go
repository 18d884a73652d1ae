package postgres

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Partitions cover weeks starting Monday 00:00 UTC. A week is numbered from
// the one starting 1970-01-05, the first Monday after the epoch.
const (
	dayNanos  = int64(24 * time.Hour)
	weekDays  = 7
	epochDays = 4 // 1970-01-01 was a Thursday
)

// weekOf returns the number of the week holding t.
func weekOf(t time.Time) int64 {
	days := floorDiv(t.Unix(), 86400)
	return floorDiv(days-epochDays, weekDays)
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

// weekStart returns the instant week w starts.
func weekStart(w int64) time.Time {
	return time.Unix((w*weekDays+epochDays)*86400, 0).UTC()
}

// partitionName names week w's partition after its first day.
func partitionName(w int64) string {
	return "samples_" + weekStart(w).Format("20060102")
}

// partitionBounds renders week w's range; the weeks holding the ends of the
// int64 nanosecond range run to MINVALUE/MAXVALUE so every storable time
// has a week.
func partitionBounds(w int64) string {
	from, to := weekStart(w), weekStart(w+1)
	lo, hi := "MINVALUE", "MAXVALUE"
	if !from.Before(minTime) {
		lo = strconv.FormatInt(from.UnixNano(), 10)
	}
	if !to.After(maxTime) {
		hi = strconv.FormatInt(to.UnixNano(), 10)
	}
	return "FROM (" + lo + ") TO (" + hi + ")"
}

// partitionLockKey serialises creating and dropping partitions of the
// current schema's samples table across every node.
const partitionLockKey = `hashtextextended('tend.partitions.' || current_schema(), 0)`

// ensurePartitions creates the partitions of the given weeks that do not
// exist yet. It runs in its own short transaction, never inside one that has
// touched samples: attaching a partition locks the parent table, and doing
// that while holding other locks on it would invite deadlocks.
func (s *Store) ensurePartitions(ctx context.Context, weeks []int64) error {
	s.mu.RLock()
	var missing []int64
	for _, w := range weeks {
		if !s.partitions[w] && !slices.Contains(missing, w) {
			missing = append(missing, w)
		}
	}
	s.mu.RUnlock()
	if len(missing) == 0 {
		return nil
	}
	slices.Sort(missing)
	names := make([]string, len(missing))
	for i, w := range missing {
		names[i] = partitionName(w)
	}
	err := s.withTx(ctx, "create partitions", func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(`+partitionLockKey+`)`); err != nil {
			return fmt.Errorf("postgres: create partitions: lock: %w", err)
		}
		rows, err := tx.Query(ctx, `SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
			WHERE i.inhparent = 'samples'::regclass AND c.relname = ANY($1)`, names)
		if err != nil {
			return fmt.Errorf("postgres: create partitions: list: %w", err)
		}
		existing, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return fmt.Errorf("postgres: create partitions: list: %w", err)
		}
		for i, w := range missing {
			if slices.Contains(existing, names[i]) {
				continue
			}
			ddl := `CREATE TABLE ` + pgx.Identifier{names[i]}.Sanitize() + ` PARTITION OF samples FOR VALUES ` + partitionBounds(w)
			if _, err := tx.Exec(ctx, ddl); err != nil {
				return fmt.Errorf("postgres: create partition %s: %w", names[i], err)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	s.mu.Lock()
	for _, w := range missing {
		s.partitions[w] = true
	}
	s.mu.Unlock()
	return nil
}

// isMissingPartition reports whether err says a row had no partition:
// another node dropped one this node still believed existed.
func isMissingPartition(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23514" && pe.TableName == "samples"
}

func (s *Store) forgetPartitions() {
	s.mu.Lock()
	clear(s.partitions)
	s.mu.Unlock()
}

var boundRE = regexp.MustCompile(`^FOR VALUES FROM \((MINVALUE|'?-?\d+'?)\) TO \((MAXVALUE|'?-?\d+'?)\)$`)

// DropPartitionsBefore drops every samples partition that ends at or before
// t, i.e. whose readings are all older than t, and returns how many it
// dropped. Readings in the week holding t are kept: retention works in
// whole weeks.
func (s *Store) DropPartitionsBefore(ctx context.Context, t time.Time) (int, error) {
	limit := clampNanos(t)
	dropped := 0
	err := s.withTx(ctx, "drop partitions", func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(`+partitionLockKey+`)`); err != nil {
			return fmt.Errorf("postgres: drop partitions: lock: %w", err)
		}
		rows, err := tx.Query(ctx, `SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
			WHERE i.inhparent = 'samples'::regclass ORDER BY c.relname`)
		if err != nil {
			return fmt.Errorf("postgres: drop partitions: list: %w", err)
		}
		type partition struct{ name, bound string }
		parts, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (partition, error) {
			var p partition
			err := r.Scan(&p.name, &p.bound)
			return p, err
		})
		if err != nil {
			return fmt.Errorf("postgres: drop partitions: list: %w", err)
		}
		for _, p := range parts {
			m := boundRE.FindStringSubmatch(p.bound)
			if m == nil {
				return fmt.Errorf("postgres: drop partitions: partition %s has unexpected bound %q", p.name, p.bound)
			}
			if m[2] == "MAXVALUE" {
				continue
			}
			end, err := strconv.ParseInt(trimQuotes(m[2]), 10, 64)
			if err != nil {
				return fmt.Errorf("postgres: drop partitions: partition %s: bad upper bound %q", p.name, m[2])
			}
			if end > limit {
				continue
			}
			if _, err := tx.Exec(ctx, `DROP TABLE `+pgx.Identifier{p.name}.Sanitize()); err != nil {
				return fmt.Errorf("postgres: drop partition %s: %w", p.name, err)
			}
			dropped++
		}
		return nil
	})
	// Whatever happened, the cache may now be wrong; relearning it costs one
	// query per week.
	s.forgetPartitions()
	if err != nil {
		return 0, err
	}
	return dropped, nil
}

func trimQuotes(s string) string {
	if len(s) >= 2 && s[0] == '\'' && s[len(s)-1] == '\'' {
		return s[1 : len(s)-1]
	}
	return s
}
