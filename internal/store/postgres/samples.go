package postgres

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tendhealth/tend/internal/reading"
	"github.com/tendhealth/tend/internal/store"
)

// seriesKey identifies a series: one code measured by one device for one
// patient.
type seriesKey struct{ patient, device, code string }

// seriesInfo is what Append needs to know about a stored series.
type seriesInfo struct {
	id        int64
	unit, mdc string
}

// copyThreshold is the batch size from which Append COPYs through the
// staging table; below it one INSERT with array parameters is cheaper (one
// round trip instead of a transaction of four).
const copyThreshold = 64

func checkReading(i int, r *reading.Reading) error {
	switch {
	case r.Patient == "":
		return fmt.Errorf("reading %d: no patient", i)
	case r.Code == "":
		return fmt.Errorf("reading %d: no code", i)
	case r.Time.IsZero() || !representable(r.Time):
		return fmt.Errorf("reading %d: time missing or out of range", i)
	case !r.Received.IsZero() && !representable(r.Received):
		return fmt.Errorf("reading %d: received time out of range", i)
	case !r.Valid():
		return fmt.Errorf("reading %d: no finite value", i)
	}
	return nil
}

// override returns v for storage when it differs from the series default.
func override(v, seriesDefault string) *string {
	if v == seriesDefault {
		return nil
	}
	return &v
}

// sampleRow is one samples row as sent to the database; ord is the
// reading's place in the batch, so the first delivery of a key wins.
type sampleRow struct {
	ord        int32
	patient    string
	series     int64
	t          int64
	value      *float64
	components []byte
	received   int64
	source     string
	unit, mdc  *string
}

// Append stores the batch and returns how many readings were new. The whole
// batch is rejected if any reading is malformed, so a caller never has to
// guess which part was stored.
func (s *Store) Append(ctx context.Context, rs []reading.Reading) (int, error) {
	if len(rs) == 0 {
		return 0, nil
	}
	weeks := make([]int64, 0, 1)
	for i := range rs {
		if err := checkReading(i, &rs[i]); err != nil {
			return 0, fmt.Errorf("postgres: append: %w", err)
		}
		if w := weekOf(rs[i].Time); !slices.Contains(weeks, w) {
			weeks = append(weeks, w)
		}
	}
	if err := s.ensurePartitions(ctx, weeks); err != nil {
		return 0, fmt.Errorf("postgres: append: %w", err)
	}
	series, err := s.resolveSeries(ctx, rs)
	if err != nil {
		return 0, err
	}
	rows := make([]sampleRow, len(rs))
	for i := range rs {
		r := &rs[i]
		info := series[seriesKey{r.Patient, r.Device, r.Code}]
		row := sampleRow{
			ord: int32(i), patient: r.Patient, series: info.id, t: r.Time.UnixNano(),
			received: toNanos(r.Received), source: r.Source,
			unit: override(r.Unit, info.unit), mdc: override(r.MDC, info.mdc),
		}
		if r.HasValue {
			v := r.Value
			row.value = &v
		}
		if row.components, err = encodeComponents(r.Components); err != nil {
			return 0, fmt.Errorf("postgres: append: reading %d: %w", i, err)
		}
		rows[i] = row
	}
	rows = sortAndDedup(rows)
	n, err := s.insertSamples(ctx, rows)
	if isMissingPartition(err) {
		// Another node dropped a partition this one still had cached.
		s.forgetPartitions()
		if err := s.ensurePartitions(ctx, weeks); err != nil {
			return 0, fmt.Errorf("postgres: append: %w", err)
		}
		n, err = s.insertSamples(ctx, rows)
	}
	if err != nil {
		return 0, fmt.Errorf("postgres: append: %w", err)
	}
	return n, nil
}

// resolveSeries returns the series of every reading in rs, creating the
// missing ones. New series are committed on their own, ahead of the
// samples: a series without samples is invisible to every query, and
// committing early means concurrent batches never wait on each other's
// series rows for the length of a sample insert.
func (s *Store) resolveSeries(ctx context.Context, rs []reading.Reading) (map[seriesKey]seriesInfo, error) {
	out := make(map[seriesKey]seriesInfo)
	var patients, devices, codes, units, mdcs []string
	s.mu.RLock()
	for i := range rs {
		r := &rs[i]
		k := seriesKey{r.Patient, r.Device, r.Code}
		if _, ok := out[k]; ok {
			continue
		}
		if info, ok := s.series[k]; ok {
			out[k] = info
			continue
		}
		out[k] = seriesInfo{} // placeholder: first reading's unit and MDC become the defaults
		patients, devices, codes = append(patients, r.Patient), append(devices, r.Device), append(codes, r.Code)
		units, mdcs = append(units, r.Unit), append(mdcs, r.MDC)
	}
	s.mu.RUnlock()
	if len(patients) == 0 {
		return out, nil
	}
	// One round trip: the insert, then (in a new snapshot) the lookup, which
	// also sees series a concurrent batch created first.
	var b pgx.Batch
	b.Queue(`INSERT INTO series (patient_id, device, code, unit, mdc)
		SELECT p, d, c, u, m FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[]) AS x(p, d, c, u, m)
		ORDER BY p, d, c
		ON CONFLICT (patient_id, device, code) DO NOTHING`, patients, devices, codes, units, mdcs)
	b.Queue(`SELECT se.patient_id, se.device, se.code, se.id, se.unit, se.mdc
		FROM series se JOIN unnest($1::text[], $2::text[], $3::text[]) AS x(p, d, c)
		ON se.patient_id = x.p AND se.device = x.d AND se.code = x.c`, patients, devices, codes)
	br := s.pool.SendBatch(ctx, &b)
	defer br.Close()
	if _, err := br.Exec(); err != nil {
		return nil, fmt.Errorf("postgres: append: create series: %w", err)
	}
	rows, err := br.Query()
	if err != nil {
		return nil, fmt.Errorf("postgres: append: read series: %w", err)
	}
	found := make(map[seriesKey]seriesInfo, len(patients))
	for rows.Next() {
		var k seriesKey
		var info seriesInfo
		if err := rows.Scan(&k.patient, &k.device, &k.code, &info.id, &info.unit, &info.mdc); err != nil {
			rows.Close()
			return nil, fmt.Errorf("postgres: append: read series: %w", err)
		}
		found[k] = info
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: append: read series: %w", err)
	}
	if len(found) != len(patients) {
		return nil, fmt.Errorf("postgres: append: %d of %d series not found after creating them", len(patients)-len(found), len(patients))
	}
	s.mu.Lock()
	for k, info := range found {
		s.series[k] = info
		out[k] = info
	}
	s.mu.Unlock()
	return out, nil
}

// sortAndDedup orders rows by key, keeps the first delivery of each key
// and renumbers ord to the sorted position. Every node inserts in this one
// order (Go's byte order, whatever the database collation), so concurrent
// batches with overlapping keys wait on each other's rows in the same order
// and cannot deadlock. Doing it here rather than in SQL spares the database
// a text sort and sends duplicates only once.
func sortAndDedup(rows []sampleRow) []sampleRow {
	slices.SortStableFunc(rows, func(a, b sampleRow) int {
		if c := strings.Compare(a.patient, b.patient); c != 0 {
			return c
		}
		if c := cmp.Compare(a.series, b.series); c != 0 {
			return c
		}
		return cmp.Compare(a.t, b.t)
	})
	out := make([]sampleRow, 0, len(rows))
	for _, r := range rows {
		if n := len(out); n > 0 && r.patient == out[n-1].patient && r.series == out[n-1].series && r.t == out[n-1].t {
			continue // a redelivery within the batch: the first one wins
		}
		r.ord = int32(len(out))
		out = append(out, r)
	}
	return out
}

// insertSelect inserts in ord order (see sortAndDedup); ON CONFLICT DO
// NOTHING skips keys already stored, so the first delivery wins.
const insertSelect = `INSERT INTO samples (patient_id, series_id, t, value, components, received, source, unit, mdc)
	SELECT patient_id, series_id, t, value, components, received, source, unit, mdc
	FROM %s ORDER BY ord
	ON CONFLICT DO NOTHING`

var stageColumns = []string{"ord", "patient_id", "series_id", "t", "value", "components", "received", "source", "unit", "mdc"}

// insertSamples inserts rows, skipping keys already stored, and returns how
// many were new. It returns once the rows are committed.
func (s *Store) insertSamples(ctx context.Context, rows []sampleRow) (int, error) {
	if len(rows) < copyThreshold {
		return s.insertSmall(ctx, rows)
	}
	var added int64
	err := s.withTx(ctx, "append", func(tx pgx.Tx) error {
		src := pgx.CopyFromSlice(len(rows), func(i int) ([]any, error) {
			r := &rows[i]
			var comps any
			if r.components != nil {
				comps = string(r.components)
			}
			return []any{r.ord, r.patient, r.series, r.t, r.value, comps, r.received, r.source, r.unit, r.mdc}, nil
		})
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{stageTable}, stageColumns, src); err != nil {
			return fmt.Errorf("stage samples: %w", err)
		}
		tag, err := tx.Exec(ctx, fmt.Sprintf(insertSelect, stageTable))
		if err != nil {
			return fmt.Errorf("insert samples: %w", err)
		}
		added = tag.RowsAffected()
		return nil
	})
	return int(added), err
}

// insertSmall sends the rows as arrays in one statement, which is atomic
// and committed on its own.
func (s *Store) insertSmall(ctx context.Context, rows []sampleRow) (int, error) {
	n := len(rows)
	var (
		ords      = make([]int32, n)
		patients  = make([]string, n)
		series    = make([]int64, n)
		ts        = make([]int64, n)
		values    = make([]*float64, n)
		comps     = make([]*string, n)
		received  = make([]int64, n)
		sources   = make([]string, n)
		units     = make([]*string, n)
		mdcs      = make([]*string, n)
		unnestSQL = `unnest($1::int[], $2::text[], $3::bigint[], $4::bigint[], $5::float8[], $6::jsonb[], $7::bigint[], $8::text[], $9::text[], $10::text[])
			AS x(ord, patient_id, series_id, t, value, components, received, source, unit, mdc)`
	)
	for i := range rows {
		r := &rows[i]
		ords[i], patients[i], series[i], ts[i], values[i] = r.ord, r.patient, r.series, r.t, r.value
		if r.components != nil {
			c := string(r.components)
			comps[i] = &c
		}
		received[i], sources[i], units[i], mdcs[i] = r.received, r.source, r.unit, r.mdc
	}
	tag, err := s.pool.Exec(ctx, fmt.Sprintf(insertSelect, unnestSQL),
		ords, patients, series, ts, values, comps, received, sources, units, mdcs)
	if err != nil {
		return 0, fmt.Errorf("insert samples: %w", err)
	}
	return int(tag.RowsAffected()), nil
}

const sampleCols = `s.series_id, s.t, s.value, s.components, s.received, s.source, se.patient_id, se.device, se.code, COALESCE(s.unit, se.unit), COALESCE(s.mdc, se.mdc)`

// sampleJoin joins samples to their series on the full key, which keeps
// the join local to one shard when distributed on the patient.
const sampleJoin = ` FROM samples s JOIN series se ON se.patient_id = s.patient_id AND se.id = s.series_id`

func scanSample(row pgx.Row) (store.Sample, error) {
	var (
		seriesID, t, received int64
		value                 *float64
		comps                 []byte
		r                     reading.Reading
	)
	if err := row.Scan(&seriesID, &t, &value, &comps, &received, &r.Source, &r.Patient, &r.Device, &r.Code, &r.Unit, &r.MDC); err != nil {
		return store.Sample{}, err
	}
	if value != nil {
		r.Value, r.HasValue = *value, true
	}
	cs, err := decodeComponents(comps)
	if err != nil {
		return store.Sample{}, fmt.Errorf("sample %s: %w", store.ObservationID(seriesID, t), err)
	}
	r.Components = cs
	r.Time = time.Unix(0, t).UTC()
	r.Received = fromNanos(received)
	return store.Sample{ID: store.ObservationID(seriesID, t), Reading: r}, nil
}

// args collects positional parameters for a query being built.
type args []any

func (a *args) add(v any) string {
	*a = append(*a, v)
	return "$" + strconv.Itoa(len(*a))
}

// sampleFilter renders the FROM and WHERE clauses shared by Samples and
// CountSamples.
func sampleFilter(q store.Query, a *args) string {
	var b strings.Builder
	b.WriteString(sampleJoin + ` WHERE s.patient_id = ` + a.add(q.Patient))
	if len(q.Codes) > 0 {
		b.WriteString(` AND se.code = ANY(` + a.add(q.Codes) + `::text[])`)
	}
	if !q.From.IsZero() {
		b.WriteString(` AND s.t >= ` + a.add(clampNanos(q.From)) + `::bigint`)
	}
	if !q.To.IsZero() {
		b.WriteString(` AND s.t < ` + a.add(clampNanos(q.To)) + `::bigint`)
	}
	if len(q.Devices) > 0 {
		b.WriteString(` AND se.device = ANY(` + a.add(q.Devices) + `::text[])`)
	}
	return b.String()
}

// afterFilter renders the keyset condition of q.After in q's order.
func afterFilter(q store.Query, a *args) (string, error) {
	if q.After == "" {
		return "", nil
	}
	series, t, err := store.ParseObservationID(q.After)
	if err != nil {
		return "", fmt.Errorf("postgres: samples after %q: %w", q.After, err)
	}
	op := "<"
	if q.Oldest {
		op = ">"
	}
	tp, sp := a.add(t), a.add(series)
	return ` AND (s.t ` + op + ` ` + tp + `::bigint OR (s.t = ` + tp + `::bigint AND s.series_id ` + op + ` ` + sp + `::bigint))`, nil
}

// Samples returns the patient's samples matching q, newest first unless
// q.Oldest. Ties in time are broken by series so paging is stable.
func (s *Store) Samples(ctx context.Context, q store.Query) ([]store.Sample, error) {
	var a args
	from := sampleFilter(q, &a)
	after, err := afterFilter(q, &a)
	if err != nil {
		return nil, err
	}
	from += after
	order := ` ORDER BY s.t DESC, s.series_id DESC`
	if q.Oldest {
		order = ` ORDER BY s.t, s.series_id`
	}
	limit, offset := limitOffset(q.Limit, q.Offset)
	query := `SELECT ` + sampleCols + from + order + ` LIMIT ` + a.add(limit) + `::bigint OFFSET ` + a.add(offset) + `::bigint`
	rows, err := s.pool.Query(ctx, query, a...)
	if err != nil {
		return nil, fmt.Errorf("postgres: samples: %w", err)
	}
	defer rows.Close()
	var out []store.Sample
	for rows.Next() {
		smp, err := scanSample(rows)
		if err != nil {
			return nil, fmt.Errorf("postgres: samples: %w", err)
		}
		out = append(out, smp)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: samples: %w", err)
	}
	return out, nil
}

// CountSamples counts the samples matching q, ignoring Limit and Offset.
func (s *Store) CountSamples(ctx context.Context, q store.Query) (int, error) {
	var a args
	from := sampleFilter(q, &a)
	var n int
	if err := s.pool.QueryRow(ctx, `SELECT COUNT(*)`+from, a...).Scan(&n); err != nil {
		return 0, fmt.Errorf("postgres: count samples: %w", err)
	}
	return n, nil
}

// Sample returns the sample with the given observation id. The id carries
// the time, so the lookup reads a single partition.
func (s *Store) Sample(ctx context.Context, id string) (store.Sample, error) {
	series, t, err := store.ParseObservationID(id)
	if err != nil {
		return store.Sample{}, fmt.Errorf("postgres: sample: %w", store.ErrNotFound)
	}
	smp, err := scanSample(s.pool.QueryRow(ctx, `SELECT `+sampleCols+sampleJoin+` WHERE se.id = $1 AND s.series_id = $1 AND s.t = $2::bigint`, series, t))
	if isNoRows(err) {
		return store.Sample{}, fmt.Errorf("postgres: sample %s: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return store.Sample{}, fmt.Errorf("postgres: sample: %w", err)
	}
	return smp, nil
}

// Latest returns the newest sample of each of the patient's codes, ordered
// by code; when several devices measure a code the newest reading wins
// (ties go to the later series, as in the embedded store).
func (s *Store) Latest(ctx context.Context, patient string) ([]store.Sample, error) {
	rows, err := s.pool.Query(ctx, `SELECT DISTINCT ON (se.code) `+sampleCols+`
		FROM series se
		CROSS JOIN LATERAL (
			SELECT * FROM samples x WHERE x.patient_id = se.patient_id AND x.series_id = se.id ORDER BY x.t DESC LIMIT 1
		) s
		WHERE se.patient_id = $1
		ORDER BY se.code, s.t DESC, s.series_id DESC`, patient)
	if err != nil {
		return nil, fmt.Errorf("postgres: latest: %w", err)
	}
	defer rows.Close()
	out := []store.Sample{}
	for rows.Next() {
		smp, err := scanSample(rows)
		if err != nil {
			return nil, fmt.Errorf("postgres: latest: %w", err)
		}
		out = append(out, smp)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: latest: %w", err)
	}
	return out, nil
}

// Downsample aggregates one code of a patient over [from, to) into buckets
// of width step aligned to from, in the database. Only non-empty buckets are
// returned, oldest first. Panels contribute their first component.
func (s *Store) Downsample(ctx context.Context, patient, code string, from, to time.Time, step time.Duration) ([]store.Bucket, error) {
	if step <= 0 {
		return nil, errors.New("postgres: downsample: step must be positive")
	}
	if !to.After(from) {
		return nil, errors.New("postgres: downsample: empty time range")
	}
	fromNs, toNs := clampNanos(from), clampNanos(to)
	// The bucket index is computed in numeric: t - from can overflow bigint
	// for windows wider than 292 years.
	rows, err := s.pool.Query(ctx, `SELECT b, count(*), min(v), max(v), avg(v) FROM (
			SELECT floor((s.t::numeric - $3::bigint) / $5::bigint)::bigint AS b,
				COALESCE(s.value, (s.components->0->>'value')::float8) AS v
			`+sampleJoin+`
			WHERE s.patient_id = $1 AND se.code = $2 AND s.t >= $3::bigint AND s.t < $4::bigint
		) x WHERE v IS NOT NULL GROUP BY b ORDER BY b`,
		patient, code, fromNs, toNs, int64(step))
	if err != nil {
		return nil, fmt.Errorf("postgres: downsample: %w", err)
	}
	defer rows.Close()
	var out []store.Bucket
	for rows.Next() {
		var idx int64
		var b store.Bucket
		if err := rows.Scan(&idx, &b.Count, &b.Min, &b.Max, &b.Mean); err != nil {
			return nil, fmt.Errorf("postgres: downsample: %w", err)
		}
		b.Start = time.Unix(0, fromNs).Add(time.Duration(idx) * step).UTC()
		out = append(out, b)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: downsample: %w", err)
	}
	return out, nil
}
