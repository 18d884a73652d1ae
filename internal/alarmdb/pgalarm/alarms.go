package pgalarm

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tendhealth/tend/internal/alarm"
	"github.com/tendhealth/tend/internal/rules"
)

// alarmColumns lists every alarms column in the order scanAlarm reads them
// and alarmValues writes them (version last).
const alarmColumns = `id, patient, state, priority, kind, rule, rule_kind, subject, name,
	raised, updated, condition, latching, device, code, value, unit, message, detail,
	acked_by, acked_at, resolved_by, resolved_at, snoozed_until, snooze_reason,
	tier, round, next_escalation, version`

// alarmValueCount is the number of alarmColumns without version.
const alarmValueCount = 28

func scanAlarm(row pgx.Row) (alarm.Alarm, error) {
	var (
		a                                                      alarm.Alarm
		state, priority, kind, ruleKind                        string
		raised, updated, ackedAt, resolvedAt, snoozed, nextEsc int64
		detail                                                 []byte
	)
	err := row.Scan(&a.ID, &a.Patient, &state, &priority, &kind, &a.Rule, &ruleKind, &a.Subject, &a.Name,
		&raised, &updated, &a.Condition, &a.Latching, &a.Device, &a.Code, &a.Value, &a.Unit, &a.Message, &detail,
		&a.AckedBy, &ackedAt, &a.ResolvedBy, &resolvedAt, &snoozed, &a.SnoozeReason,
		&a.Tier, &a.Round, &nextEsc, &a.Version)
	if err != nil {
		return alarm.Alarm{}, err
	}
	a.State, a.Priority, a.Kind, a.RuleKind = alarm.State(state), rules.Priority(priority), rules.Category(kind), rules.Kind(ruleKind)
	a.Raised, a.Updated = fromNanos(raised), fromNanos(updated)
	a.AckedAt, a.ResolvedAt, a.SnoozedUntil, a.NextEscalation = fromNanos(ackedAt), fromNanos(resolvedAt), fromNanos(snoozed), fromNanos(nextEsc)
	a.Detail = detail
	return a, nil
}

// alarmValues returns a's column values in alarmColumns order, without
// version.
func alarmValues(a *alarm.Alarm) ([]any, error) {
	if a.ID == "" {
		return nil, errors.New("empty id")
	}
	if _, ok := alarm.ParseState(string(a.State)); !ok {
		return nil, fmt.Errorf("alarm %s: invalid state %q", a.ID, a.State)
	}
	if err := checkTimes(a.Raised, a.Updated, a.AckedAt, a.ResolvedAt, a.SnoozedUntil, a.NextEscalation); err != nil {
		return nil, fmt.Errorf("alarm %s: %w", a.ID, err)
	}
	var detail []byte
	if a.Detail != nil {
		detail = []byte(a.Detail)
	}
	return []any{a.ID, a.Patient, string(a.State), string(a.Priority), string(a.Kind), a.Rule, string(a.RuleKind), a.Subject, a.Name,
		toNanos(a.Raised), toNanos(a.Updated), a.Condition, a.Latching, a.Device, a.Code, a.Value, a.Unit, a.Message, detail,
		a.AckedBy, toNanos(a.AckedAt), a.ResolvedBy, toNanos(a.ResolvedAt), toNanos(a.SnoozedUntil), a.SnoozeReason,
		a.Tier, a.Round, toNanos(a.NextEscalation)}, nil
}

func getAlarm(ctx context.Context, q querier, id string) (alarm.Alarm, error) {
	a, err := scanAlarm(q.QueryRow(ctx, `SELECT `+alarmColumns+` FROM alarms WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return alarm.Alarm{}, fmt.Errorf("pgalarm: alarm %s: %w", id, alarm.ErrNotFound)
	}
	if err != nil {
		return alarm.Alarm{}, fmt.Errorf("pgalarm: alarm %s: %w", id, err)
	}
	return a, nil
}

func queryAlarms(ctx context.Context, q querier, what, query string, args ...any) ([]alarm.Alarm, error) {
	rows, err := q.Query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("pgalarm: %s: %w", what, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (alarm.Alarm, error) { return scanAlarm(r) })
	if err != nil {
		return nil, fmt.Errorf("pgalarm: %s: %w", what, err)
	}
	return out, nil
}

// Alarm returns one episode (alarm.ErrNotFound if none).
func (db *DB) Alarm(ctx context.Context, id string) (alarm.Alarm, error) {
	return getAlarm(ctx, db.pool, id)
}

// Alarms lists episodes matching f, newest raised first (ties: greatest id
// first). Limit <= 0 means no limit.
func (db *DB) Alarms(ctx context.Context, f alarm.Filter) ([]alarm.Alarm, error) {
	patients, none := alarm.ScopedPatients(f)
	if none {
		return nil, nil
	}
	var (
		where []string
		args  []any
	)
	if len(patients) == 1 {
		args = append(args, patients[0])
		where = append(where, `patient = $`+strconv.Itoa(len(args)))
		patients = nil
	}
	if len(f.States) > 0 {
		states := make([]string, len(f.States))
		for i, s := range f.States {
			states[i] = string(s)
		}
		args = append(args, states)
		where = append(where, `state = ANY($`+strconv.Itoa(len(args))+`::text[])`)
	}
	if f.NoNotices {
		args = append(args, string(alarm.KindNotice))
		where = append(where, `rule_kind <> $`+strconv.Itoa(len(args)))
	}
	if patients != nil && f.Limit > 0 && len(patients) <= alarm.PerPatientScan {
		// A few patients: each one's newest Limit through
		// alarms_patient_raised, then the newest Limit of those; at most
		// len(patients)·Limit rows are read however large the table is.
		args = append(args, patients, f.Limit)
		pl, ll := strconv.Itoa(len(args)-1), strconv.Itoa(len(args))
		query := `SELECT ` + alarmColumns + ` FROM unnest($` + pl + `::text[]) AS p(pid) CROSS JOIN LATERAL (
			SELECT ` + alarmColumns + ` FROM alarms WHERE ` + strings.Join(append([]string{`patient = p.pid`}, where...), ` AND `) + `
			ORDER BY raised DESC, id DESC LIMIT $` + ll + `) a
			ORDER BY raised DESC, id DESC LIMIT $` + ll
		return queryAlarms(ctx, db.pool, "list alarms", query, args...)
	}
	if patients != nil {
		// Many patients (an organisation): the planner chooses between
		// walking alarms newest first and probing the set, or the reverse.
		args = append(args, patients)
		where = append(where, `patient = ANY($`+strconv.Itoa(len(args))+`::text[])`)
	}
	query := `SELECT ` + alarmColumns + ` FROM alarms`
	if len(where) > 0 {
		query += ` WHERE ` + strings.Join(where, ` AND `)
	}
	args = append(args, sqlLimit(f.Limit))
	query += ` ORDER BY raised DESC, id DESC LIMIT $` + strconv.Itoa(len(args))
	return queryAlarms(ctx, db.pool, "list alarms", query, args...)
}

// DueEscalations returns active (open, unacknowledged) episodes whose
// next_escalation is set and not after now, the longest overdue first.
// It only reads: an episode another node escalates meanwhile fails the
// caller's version check.
func (db *DB) DueEscalations(ctx context.Context, now time.Time, limit int) ([]alarm.Alarm, error) {
	if err := checkTimes(now); err != nil {
		return nil, fmt.Errorf("pgalarm: due escalations: %w", err)
	}
	// The literals match the partial index alarms_due_escalation.
	query := `SELECT ` + alarmColumns + ` FROM alarms
		WHERE state = 'active' AND next_escalation <> 0 AND next_escalation <= $1
		ORDER BY next_escalation, raised, id LIMIT $2`
	return queryAlarms(ctx, db.pool, "due escalations", query, toNanos(now), sqlLimit(limit))
}

// History returns an episode's changes, oldest first; changes at the same
// instant keep the order they were added in.
func (db *DB) History(ctx context.Context, alarmID string) ([]alarm.Change, error) {
	rows, err := db.pool.Query(ctx, `SELECT alarm, at, action, by, reason, detail FROM alarm_changes WHERE alarm = $1 ORDER BY at, seq`, alarmID)
	if err != nil {
		return nil, fmt.Errorf("pgalarm: history %s: %w", alarmID, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (alarm.Change, error) {
		var (
			c  alarm.Change
			at int64
		)
		err := r.Scan(&c.Alarm, &at, &c.Action, &c.By, &c.Reason, &c.Detail)
		c.At = fromNanos(at)
		return c, err
	})
	if err != nil {
		return nil, fmt.Errorf("pgalarm: history %s: %w", alarmID, err)
	}
	return out, nil
}

// OpenAlarm returns the open (not resolved) episode of a patient, rule and
// subject, if any.
func (t *tx) OpenAlarm(patient, rule, subject string) (alarm.Alarm, bool, error) {
	a, err := scanAlarm(t.q.QueryRow(t.ctx, `SELECT `+alarmColumns+` FROM alarms
		WHERE patient = $1 AND rule = $2 AND subject = $3 AND state <> 'resolved'`, patient, rule, subject))
	if errors.Is(err, pgx.ErrNoRows) {
		return alarm.Alarm{}, false, nil
	}
	if err != nil {
		return alarm.Alarm{}, false, fmt.Errorf("pgalarm: open alarm %s/%s/%s: %w", patient, rule, subject, err)
	}
	return a, true, nil
}

// Alarm returns one episode as this transaction sees it.
func (t *tx) Alarm(id string) (alarm.Alarm, error) {
	return getAlarm(t.ctx, t.q, id)
}

var (
	insertAlarm = `INSERT INTO alarms(` + alarmColumns + `) VALUES (` + params(1, alarmValueCount+1) + `)
		ON CONFLICT DO NOTHING`
	updateAlarm = `UPDATE alarms SET (` + alarmColumns + `) = (` + params(1, alarmValueCount+1) + `)
		WHERE id = $` + strconv.Itoa(alarmValueCount+2) + ` AND version = $` + strconv.Itoa(alarmValueCount+3)
)

// PutAlarm inserts a (Version 0 → 1) or updates it if its stored Version is
// still a.Version (then Version+1), and sets a.Version to the stored
// version. It fails with alarm.ErrConflict when the version does not match,
// when an episode with that id already exists on insert, and when the write
// would leave two open episodes of one patient, rule and subject (counting
// those other nodes have committed meanwhile).
func (t *tx) PutAlarm(a *alarm.Alarm) error {
	vals, err := alarmValues(a)
	if err != nil {
		return fmt.Errorf("pgalarm: put alarm: %w", err)
	}
	if a.Version == 0 {
		// ON CONFLICT DO NOTHING covers the primary key and the open-episode
		// index alike, and leaves the transaction usable.
		tag, err := t.q.Exec(t.ctx, insertAlarm, append(vals, 1)...)
		if err != nil {
			return fmt.Errorf("pgalarm: put alarm %s: %w", a.ID, err)
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("pgalarm: put alarm %s: id taken or another episode of %s/%s/%q open: %w",
				a.ID, a.Patient, a.Rule, a.Subject, alarm.ErrConflict)
		}
		a.Version = 1
		return nil
	}
	tag, err := t.q.Exec(t.ctx, updateAlarm, append(vals, a.Version+1, a.ID, a.Version)...)
	if isUniqueViolation(err) {
		return fmt.Errorf("pgalarm: put alarm %s: %w: %w", a.ID, alarm.ErrConflict, err)
	}
	if err != nil {
		return fmt.Errorf("pgalarm: put alarm %s: %w", a.ID, err)
	}
	if tag.RowsAffected() == 0 {
		var stored int
		err := t.q.QueryRow(t.ctx, `SELECT version FROM alarms WHERE id = $1`, a.ID).Scan(&stored)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("pgalarm: put alarm %s: version %d: %w: %w", a.ID, a.Version, alarm.ErrConflict, alarm.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("pgalarm: put alarm %s: %w", a.ID, err)
		}
		return fmt.Errorf("pgalarm: put alarm %s: version %d, stored %d: %w", a.ID, a.Version, stored, alarm.ErrConflict)
	}
	a.Version++
	return nil
}

// AddChange appends one history entry.
func (t *tx) AddChange(c alarm.Change) error {
	if c.Alarm == "" {
		return errors.New("pgalarm: add change: empty alarm id")
	}
	if err := checkTimes(c.At); err != nil {
		return fmt.Errorf("pgalarm: add change to %s: %w", c.Alarm, err)
	}
	_, err := t.q.Exec(t.ctx, `INSERT INTO alarm_changes(alarm, at, action, by, reason, detail) VALUES ($1, $2, $3, $4, $5, $6)`,
		c.Alarm, toNanos(c.At), c.Action, c.By, c.Reason, c.Detail)
	if err != nil {
		return fmt.Errorf("pgalarm: add change to %s: %w", c.Alarm, err)
	}
	return nil
}

// params returns "$from, …, $(from+n-1)".
func params(from, n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("$" + strconv.Itoa(from+i))
	}
	return b.String()
}
