package alarmdb

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/tendhealth/tend/internal/alarm"
	"github.com/tendhealth/tend/internal/rules"
)

// alarmColumns lists every alarms column in the order scanAlarm reads them
// and alarmValues writes them (version last).
const alarmColumns = `id, patient, state, priority, kind, rule, rule_kind, subject, name,
	raised, updated, condition, latching, device, code, value, unit, message, detail,
	acked_by, acked_at, resolved_by, resolved_at, snoozed_until, snooze_reason,
	tier, round, next_escalation, version`

type scanner interface{ Scan(dest ...any) error }

func scanAlarm(row scanner) (alarm.Alarm, error) {
	var (
		a                                                      alarm.Alarm
		state, priority, kind, ruleKind                        string
		raised, updated, ackedAt, resolvedAt, snoozed, nextEsc int64
		detail                                                 []byte
		value                                                  sql.NullFloat64
	)
	err := row.Scan(&a.ID, &a.Patient, &state, &priority, &kind, &a.Rule, &ruleKind, &a.Subject, &a.Name,
		&raised, &updated, &a.Condition, &a.Latching, &a.Device, &a.Code, &value, &a.Unit, &a.Message, &detail,
		&a.AckedBy, &ackedAt, &a.ResolvedBy, &resolvedAt, &snoozed, &a.SnoozeReason,
		&a.Tier, &a.Round, &nextEsc, &a.Version)
	if err != nil {
		return alarm.Alarm{}, err
	}
	a.Value = math.NaN()
	if value.Valid {
		a.Value = value.Float64
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
	var value any = a.Value
	if math.IsNaN(a.Value) {
		value = nil
	}
	return []any{a.ID, a.Patient, string(a.State), string(a.Priority), string(a.Kind), a.Rule, string(a.RuleKind), a.Subject, a.Name,
		toNanos(a.Raised), toNanos(a.Updated), a.Condition, a.Latching, a.Device, a.Code, value, a.Unit, a.Message, detail,
		a.AckedBy, toNanos(a.AckedAt), a.ResolvedBy, toNanos(a.ResolvedAt), toNanos(a.SnoozedUntil), a.SnoozeReason,
		a.Tier, a.Round, toNanos(a.NextEscalation)}, nil
}

func getAlarm(ctx context.Context, q queryer, id string) (alarm.Alarm, error) {
	a, err := scanAlarm(q.QueryRowContext(ctx, `SELECT `+alarmColumns+` FROM alarms WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return alarm.Alarm{}, fmt.Errorf("alarmdb: alarm %s: %w", id, alarm.ErrNotFound)
	}
	if err != nil {
		return alarm.Alarm{}, fmt.Errorf("alarmdb: alarm %s: %w", id, err)
	}
	return a, nil
}

func queryAlarms(ctx context.Context, q queryer, what, query string, args ...any) ([]alarm.Alarm, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("alarmdb: %s: %w", what, err)
	}
	defer rows.Close()
	var out []alarm.Alarm
	for rows.Next() {
		a, err := scanAlarm(rows)
		if err != nil {
			return nil, fmt.Errorf("alarmdb: %s: scan: %w", what, err)
		}
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("alarmdb: %s: %w", what, err)
	}
	return out, nil
}

// Alarm returns one episode (alarm.ErrNotFound if none).
func (db *DB) Alarm(ctx context.Context, id string) (alarm.Alarm, error) {
	return getAlarm(ctx, db.r, id)
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
	if len(f.States) > 0 {
		marks := make([]string, len(f.States))
		for i, s := range f.States {
			marks[i] = "?"
			args = append(args, string(s))
		}
		where = append(where, `state IN (`+strings.Join(marks, ", ")+`)`)
	}
	if f.NoNotices {
		where = append(where, `rule_kind <> ?`)
		args = append(args, string(alarm.KindNotice))
	}
	lim, limArgs := limitClause(f.Limit)
	if len(patients) == 1 {
		where = append(where, `patient = ?`)
		args = append(args, patients[0])
		patients = nil
	}
	if patients != nil && f.Limit > 0 && len(patients) <= alarm.PerPatientScan {
		// A few patients: each one's newest Limit through
		// alarms_patient_raised, then the newest Limit of those. This reads
		// at most len(patients)·Limit rows however large the table is.
		arms := make([]string, len(patients))
		var all []any
		for i, p := range patients {
			arms[i] = `SELECT * FROM (SELECT ` + alarmColumns + ` FROM alarms WHERE ` +
				strings.Join(append([]string{`patient = ?`}, where...), ` AND `) + ` ORDER BY raised DESC, id DESC LIMIT ?)`
			all = append(all, p)
			all = append(all, args...)
			all = append(all, f.Limit)
		}
		query := strings.Join(arms, ` UNION ALL `) + ` ORDER BY raised DESC, id DESC` + lim
		return queryAlarms(ctx, db.r, "list alarms", query, append(all, limArgs...)...)
	}
	if patients != nil {
		// Many patients (an organisation): walk alarms newest first and
		// keep those in the set, which SQLite probes as an index it builds
		// from the JSON array (no bound-variable limit).
		set, err := json.Marshal(patients)
		if err != nil {
			return nil, fmt.Errorf("alarmdb: list alarms: %w", err)
		}
		where = append(where, `patient IN (SELECT value FROM json_each(?))`)
		args = append(args, string(set))
	}
	query := `SELECT ` + alarmColumns + ` FROM alarms`
	if len(where) > 0 {
		query += ` WHERE ` + strings.Join(where, ` AND `)
	}
	query += ` ORDER BY raised DESC, id DESC`
	return queryAlarms(ctx, db.r, "list alarms", query+lim, append(args, limArgs...)...)
}

// DueEscalations returns active (open, unacknowledged) episodes whose
// next_escalation is set and not after now, the longest overdue first.
func (db *DB) DueEscalations(ctx context.Context, now time.Time, limit int) ([]alarm.Alarm, error) {
	if err := checkTimes(now); err != nil {
		return nil, fmt.Errorf("alarmdb: due escalations: %w", err)
	}
	lim, limArgs := limitClause(limit)
	// The state literal lets the planner use alarms_state_escalation.
	query := `SELECT ` + alarmColumns + ` FROM alarms
		WHERE state = 'active' AND next_escalation <> 0 AND next_escalation <= ?
		ORDER BY next_escalation, raised, id` + lim
	return queryAlarms(ctx, db.r, "due escalations", query, append([]any{toNanos(now)}, limArgs...)...)
}

// History returns an episode's changes, oldest first; changes at the same
// instant keep the order they were added in.
func (db *DB) History(ctx context.Context, alarmID string) ([]alarm.Change, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT alarm, at, action, by, reason, detail FROM changes WHERE alarm = ? ORDER BY at, seq`, alarmID)
	if err != nil {
		return nil, fmt.Errorf("alarmdb: history %s: %w", alarmID, err)
	}
	defer rows.Close()
	var out []alarm.Change
	for rows.Next() {
		var (
			c  alarm.Change
			at int64
		)
		if err := rows.Scan(&c.Alarm, &at, &c.Action, &c.By, &c.Reason, &c.Detail); err != nil {
			return nil, fmt.Errorf("alarmdb: history %s: scan: %w", alarmID, err)
		}
		c.At = fromNanos(at)
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("alarmdb: history %s: %w", alarmID, err)
	}
	return out, nil
}

// OpenAlarm returns the open (not resolved) episode of a patient, rule and
// subject, if any.
func (t *tx) OpenAlarm(patient, rule, subject string) (alarm.Alarm, bool, error) {
	a, err := scanAlarm(t.q.QueryRowContext(t.ctx, `SELECT `+alarmColumns+` FROM alarms
		WHERE patient = ? AND rule = ? AND subject = ? AND state <> 'resolved'`, patient, rule, subject))
	if errors.Is(err, sql.ErrNoRows) {
		return alarm.Alarm{}, false, nil
	}
	if err != nil {
		return alarm.Alarm{}, false, fmt.Errorf("alarmdb: open alarm %s/%s/%s: %w", patient, rule, subject, err)
	}
	return a, true, nil
}

// Alarm returns one episode as this transaction sees it.
func (t *tx) Alarm(id string) (alarm.Alarm, error) {
	return getAlarm(t.ctx, t.q, id)
}

// PutAlarm inserts a (Version 0 → 1) or updates it if its stored Version is
// still a.Version (then Version+1), and sets a.Version to the stored
// version. It fails with alarm.ErrConflict when the version does not match,
// when an episode with that id already exists on insert, and when the write
// would leave two open episodes of one patient, rule and subject.
func (t *tx) PutAlarm(a *alarm.Alarm) error {
	vals, err := alarmValues(a)
	if err != nil {
		return fmt.Errorf("alarmdb: put alarm: %w", err)
	}
	if a.Version == 0 {
		_, err := t.q.ExecContext(t.ctx, `INSERT INTO alarms(`+alarmColumns+`) VALUES (`+placeholders(len(vals)+1)+`)`, append(vals, 1)...)
		if isUniqueViolation(err) {
			return fmt.Errorf("alarmdb: put alarm %s: %w: %v", a.ID, alarm.ErrConflict, err)
		}
		if err != nil {
			return fmt.Errorf("alarmdb: put alarm %s: %w", a.ID, err)
		}
		a.Version = 1
		return nil
	}
	res, err := t.q.ExecContext(t.ctx, `UPDATE alarms SET (`+alarmColumns+`) = (`+placeholders(len(vals)+1)+`)
		WHERE id = ? AND version = ?`, append(vals, a.Version+1, a.ID, a.Version)...)
	if isUniqueViolation(err) {
		return fmt.Errorf("alarmdb: put alarm %s: %w: %v", a.ID, alarm.ErrConflict, err)
	}
	if err != nil {
		return fmt.Errorf("alarmdb: put alarm %s: %w", a.ID, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("alarmdb: put alarm %s: %w", a.ID, err)
	}
	if n == 0 {
		var stored int
		err := t.q.QueryRowContext(t.ctx, `SELECT version FROM alarms WHERE id = ?`, a.ID).Scan(&stored)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("alarmdb: put alarm %s: version %d: %w: %w", a.ID, a.Version, alarm.ErrConflict, alarm.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("alarmdb: put alarm %s: %w", a.ID, err)
		}
		return fmt.Errorf("alarmdb: put alarm %s: version %d, stored %d: %w", a.ID, a.Version, stored, alarm.ErrConflict)
	}
	a.Version++
	return nil
}

// AddChange appends one history entry.
func (t *tx) AddChange(c alarm.Change) error {
	if c.Alarm == "" {
		return errors.New("alarmdb: add change: empty alarm id")
	}
	if err := checkTimes(c.At); err != nil {
		return fmt.Errorf("alarmdb: add change to %s: %w", c.Alarm, err)
	}
	_, err := t.q.ExecContext(t.ctx, `INSERT INTO changes(alarm, at, action, by, reason, detail) VALUES (?, ?, ?, ?, ?, ?)`,
		c.Alarm, toNanos(c.At), c.Action, c.By, c.Reason, c.Detail)
	if err != nil {
		return fmt.Errorf("alarmdb: add change to %s: %w", c.Alarm, err)
	}
	return nil
}

// placeholders returns "?, ?, …" with n marks.
func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?, ", n), ", ")
}
