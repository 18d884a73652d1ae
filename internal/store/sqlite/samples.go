package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

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

// override returns v for storage when it differs from the series default.
func override(v, seriesDefault string) any {
	if v == seriesDefault {
		return nil
	}
	return v
}

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

// Append stores the batch in one transaction and returns how many readings
// were new. The whole batch is rejected if any reading is malformed, so a
// caller never has to guess which part was stored.
func (s *Store) Append(ctx context.Context, rs []reading.Reading) (int, error) {
	if len(rs) == 0 {
		return 0, nil
	}
	for i := range rs {
		if err := checkReading(i, &rs[i]); err != nil {
			return 0, fmt.Errorf("sqlite: append: %w", err)
		}
	}
	created := map[seriesKey]seriesInfo{} // published to the cache only after commit
	added := 0
	err := s.withTx(ctx, "append", func(tx *sql.Tx) error {
		insSample := tx.StmtContext(ctx, s.insertSample)
		defer insSample.Close()
		var insSeries, selSeries *sql.Stmt
		defer func() {
			if insSeries != nil {
				insSeries.Close()
				selSeries.Close()
			}
		}()
		for i := range rs {
			r := &rs[i]
			k := seriesKey{r.Patient, r.Device, r.Code}
			s.mu.RLock()
			info, ok := s.series[k]
			s.mu.RUnlock()
			if !ok {
				info, ok = created[k]
			}
			if !ok {
				if insSeries == nil {
					insSeries, selSeries = tx.StmtContext(ctx, s.insertSeries), tx.StmtContext(ctx, s.selectSeries)
				}
				if _, err := insSeries.ExecContext(ctx, r.Patient, r.Device, r.Code, r.Unit, r.MDC); err != nil {
					return fmt.Errorf("sqlite: append: create series: %w", err)
				}
				if err := selSeries.QueryRowContext(ctx, r.Patient, r.Device, r.Code).Scan(&info.id, &info.unit, &info.mdc); err != nil {
					return fmt.Errorf("sqlite: append: read series: %w", err)
				}
				created[k] = info
			}
			var value any
			if r.HasValue {
				value = r.Value
			}
			var comps any
			if len(r.Components) > 0 {
				comps = encodeComponents(r.Components)
			}
			res, err := insSample.ExecContext(ctx, info.id, r.Time.UnixNano(), value, comps, toNanos(r.Received), r.Source,
				override(r.Unit, info.unit), override(r.MDC, info.mdc))
			if err != nil {
				return fmt.Errorf("sqlite: append: insert sample: %w", err)
			}
			if n, err := res.RowsAffected(); err == nil && n > 0 {
				added++
			}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	if len(created) > 0 {
		s.mu.Lock()
		for k, info := range created {
			s.series[k] = info
		}
		s.mu.Unlock()
	}
	return added, nil
}

const sampleCols = `s.series_id, s.t, s.value, s.components, s.received, s.source, se.patient, se.device, se.code, COALESCE(s.unit, se.unit), COALESCE(s.mdc, se.mdc)`

func scanSample(sc interface{ Scan(...any) error }) (store.Sample, error) {
	var (
		seriesID, t, received int64
		value                 sql.NullFloat64
		comps                 []byte
		r                     reading.Reading
	)
	if err := sc.Scan(&seriesID, &t, &value, &comps, &received, &r.Source, &r.Patient, &r.Device, &r.Code, &r.Unit, &r.MDC); err != nil {
		return store.Sample{}, err
	}
	if value.Valid {
		r.Value, r.HasValue = value.Float64, true
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

// filter renders the WHERE clause shared by Samples and CountSamples.
func sampleFilter(q store.Query) (string, []any) {
	var b strings.Builder
	args := []any{q.Patient}
	b.WriteString(` FROM samples s JOIN series se ON se.id = s.series_id WHERE se.patient = ?`)
	if len(q.Codes) > 0 {
		b.WriteString(` AND se.code IN (?` + strings.Repeat(`, ?`, len(q.Codes)-1) + `)`)
		for _, c := range q.Codes {
			args = append(args, c)
		}
	}
	if !q.From.IsZero() {
		b.WriteString(` AND s.t >= ?`)
		args = append(args, clampNanos(q.From))
	}
	if !q.To.IsZero() {
		b.WriteString(` AND s.t < ?`)
		args = append(args, clampNanos(q.To))
	}
	if len(q.Devices) > 0 {
		b.WriteString(` AND se.device IN (?` + strings.Repeat(`, ?`, len(q.Devices)-1) + `)`)
		for _, d := range q.Devices {
			args = append(args, d)
		}
	}
	return b.String(), args
}

// afterFilter renders the keyset condition of q.After in q's order.
func afterFilter(q store.Query) (string, []any, error) {
	if q.After == "" {
		return "", nil, nil
	}
	series, t, err := store.ParseObservationID(q.After)
	if err != nil {
		return "", nil, fmt.Errorf("sqlite: samples after %q: %w", q.After, err)
	}
	if q.Oldest {
		return ` AND (s.t > ? OR (s.t = ? AND s.series_id > ?))`, []any{t, t, series}, nil
	}
	return ` AND (s.t < ? OR (s.t = ? AND s.series_id < ?))`, []any{t, t, series}, nil
}

func clampNanos(t time.Time) int64 {
	switch {
	case t.Before(minTime):
		return -1 << 63
	case t.After(maxTime):
		return 1<<63 - 1
	}
	return t.UnixNano()
}

// Samples returns the patient's samples matching q, newest first unless
// q.Oldest. Ties in time are broken by series so paging is stable.
func (s *Store) Samples(ctx context.Context, q store.Query) ([]store.Sample, error) {
	from, args := sampleFilter(q)
	after, afterArgs, err := afterFilter(q)
	if err != nil {
		return nil, err
	}
	from += after
	args = append(args, afterArgs...)
	order := ` ORDER BY s.t DESC, s.series_id DESC`
	if q.Oldest {
		order = ` ORDER BY s.t, s.series_id`
	}
	lo, loArgs := limitOffset(q.Limit, q.Offset)
	rows, err := s.r.QueryContext(ctx, `SELECT `+sampleCols+from+order+lo, append(args, loArgs...)...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: samples: %w", err)
	}
	defer rows.Close()
	var out []store.Sample
	for rows.Next() {
		smp, err := scanSample(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite: samples: %w", err)
		}
		out = append(out, smp)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: samples: %w", err)
	}
	return out, nil
}

// CountSamples counts the samples matching q, ignoring Limit and Offset.
func (s *Store) CountSamples(ctx context.Context, q store.Query) (int, error) {
	from, args := sampleFilter(q)
	var n int
	if err := s.r.QueryRowContext(ctx, `SELECT COUNT(*)`+from, args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("sqlite: count samples: %w", err)
	}
	return n, nil
}

// Sample returns the sample with the given observation id.
func (s *Store) Sample(ctx context.Context, id string) (store.Sample, error) {
	series, t, err := store.ParseObservationID(id)
	if err != nil {
		return store.Sample{}, fmt.Errorf("sqlite: sample: %w", store.ErrNotFound)
	}
	return s.sampleAt(ctx, series, t)
}

func (s *Store) sampleAt(ctx context.Context, series, t int64) (store.Sample, error) {
	smp, err := scanSample(s.r.QueryRowContext(ctx, `SELECT `+sampleCols+` FROM samples s JOIN series se ON se.id = s.series_id WHERE s.series_id = ? AND s.t = ?`, series, t))
	if errors.Is(err, sql.ErrNoRows) {
		return store.Sample{}, fmt.Errorf("sqlite: sample %s: %w", store.ObservationID(series, t), store.ErrNotFound)
	}
	if err != nil {
		return store.Sample{}, fmt.Errorf("sqlite: sample: %w", err)
	}
	return smp, nil
}

// Latest returns the newest sample of each of the patient's codes, ordered
// by code; when several devices measure a code the newest reading wins.
func (s *Store) Latest(ctx context.Context, patient string) ([]store.Sample, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT se.id, se.code, (SELECT MAX(t) FROM samples WHERE series_id = se.id) AS mt
		FROM series se WHERE se.patient = ?`, patient)
	if err != nil {
		return nil, fmt.Errorf("sqlite: latest: %w", err)
	}
	type head struct{ series, t int64 }
	best := map[string]head{}
	for rows.Next() {
		var id int64
		var code string
		var mt sql.NullInt64
		if err := rows.Scan(&id, &code, &mt); err != nil {
			rows.Close()
			return nil, fmt.Errorf("sqlite: latest: %w", err)
		}
		if !mt.Valid {
			continue
		}
		b, ok := best[code]
		if !ok || mt.Int64 > b.t || (mt.Int64 == b.t && id > b.series) {
			best[code] = head{id, mt.Int64}
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: latest: %w", err)
	}
	codes := make([]string, 0, len(best))
	for c := range best {
		codes = append(codes, c)
	}
	sort.Strings(codes)
	out := make([]store.Sample, 0, len(codes))
	for _, c := range codes {
		smp, err := s.sampleAt(ctx, best[c].series, best[c].t)
		if err != nil {
			return nil, fmt.Errorf("sqlite: latest: %w", err)
		}
		out = append(out, smp)
	}
	return out, nil
}

// Downsample aggregates one code of a patient over [from, to) into buckets
// of width step aligned to from. Only non-empty buckets are returned, oldest
// first. Panels contribute their first component.
func (s *Store) Downsample(ctx context.Context, patient, code string, from, to time.Time, step time.Duration) ([]store.Bucket, error) {
	if step <= 0 {
		return nil, errors.New("sqlite: downsample: step must be positive")
	}
	if !to.After(from) {
		return nil, errors.New("sqlite: downsample: empty time range")
	}
	fromNs, toNs := clampNanos(from), clampNanos(to)
	rows, err := s.r.QueryContext(ctx, `SELECT s.t, s.value, s.components FROM samples s JOIN series se ON se.id = s.series_id
		WHERE se.patient = ? AND se.code = ? AND s.t >= ? AND s.t < ? ORDER BY s.t`, patient, code, fromNs, toNs)
	if err != nil {
		return nil, fmt.Errorf("sqlite: downsample: %w", err)
	}
	defer rows.Close()
	var out []store.Bucket
	var sum float64
	cur := int64(-1)
	flush := func() {
		if n := len(out); n > 0 {
			out[n-1].Mean = sum / float64(out[n-1].Count)
		}
	}
	for rows.Next() {
		var t int64
		var value sql.NullFloat64
		var comps []byte
		if err := rows.Scan(&t, &value, &comps); err != nil {
			return nil, fmt.Errorf("sqlite: downsample: %w", err)
		}
		v := value.Float64
		if !value.Valid {
			cs, err := decodeComponents(comps)
			if err != nil {
				return nil, fmt.Errorf("sqlite: downsample: %w", err)
			}
			if len(cs) == 0 {
				continue
			}
			v = cs[0].Value
		}
		// t >= fromNs, so the difference is non-negative unless it overflows
		// int64 (a window wider than 292 years): use unsigned arithmetic.
		idx := int64(uint64(t-fromNs) / uint64(step))
		if idx != cur {
			flush()
			cur, sum = idx, 0
			out = append(out, store.Bucket{
				Start: time.Unix(0, fromNs).Add(time.Duration(idx) * step).UTC(),
				Min:   v, Max: v,
			})
		}
		b := &out[len(out)-1]
		b.Count++
		sum += v
		b.Min = min(b.Min, v)
		b.Max = max(b.Max, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: downsample: %w", err)
	}
	flush()
	return out, nil
}
