package alarmdb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/tendhealth/tend/internal/alarm"
)

const deliveryColumns = `id, alarm, event, recipient, body, created, due, attempts, state, last_error, receipt, delivered`

func scanDelivery(row scanner) (alarm.Delivery, error) {
	var (
		d                       alarm.Delivery
		state                   string
		created, due, delivered int64
	)
	if err := row.Scan(&d.ID, &d.Alarm, &d.Event, &d.Recipient, &d.Body, &created, &due, &d.Attempts, &state, &d.LastError, &d.Receipt, &delivered); err != nil {
		return alarm.Delivery{}, err
	}
	d.State = alarm.DeliveryState(state)
	d.Created, d.Due, d.Delivered = fromNanos(created), fromNanos(due), fromNanos(delivered)
	return d, nil
}

func queryDeliveries(ctx context.Context, q queryer, what, query string, args ...any) ([]alarm.Delivery, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("alarmdb: %s: %w", what, err)
	}
	defer rows.Close()
	var out []alarm.Delivery
	for rows.Next() {
		d, err := scanDelivery(rows)
		if err != nil {
			return nil, fmt.Errorf("alarmdb: %s: scan: %w", what, err)
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("alarmdb: %s: %w", what, err)
	}
	return out, nil
}

func checkDeliveryState(s alarm.DeliveryState) error {
	switch s {
	case alarm.Pending, alarm.Delivered, alarm.Failed:
		return nil
	}
	return fmt.Errorf("invalid state %q", s)
}

// Deliveries lists an episode's outbox rows in the order they were created.
func (db *DB) Deliveries(ctx context.Context, alarmID string) ([]alarm.Delivery, error) {
	return queryDeliveries(ctx, db.r, "deliveries of "+alarmID,
		`SELECT `+deliveryColumns+` FROM deliveries WHERE alarm = ? ORDER BY created, rowid`, alarmID)
}

// ClaimDeliveries leases up to limit pending deliveries due by now whose
// lease has ended (limit <= 0: all of them), earliest due first. A lease
// ends at now+lease or at FinishDelivery.
func (db *DB) ClaimDeliveries(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]alarm.Delivery, error) {
	until := now.Add(lease)
	if err := checkTimes(now, until); err != nil {
		return nil, fmt.Errorf("alarmdb: claim deliveries: %w", err)
	}
	if lease <= 0 {
		return nil, fmt.Errorf("alarmdb: claim deliveries: lease %s must be positive", lease)
	}
	var out []alarm.Delivery
	err := db.withTx(ctx, "claim deliveries", func(sqlTx *sql.Tx) error {
		lim, limArgs := limitClause(limit)
		// The state literal lets the planner use deliveries_state_due.
		claimed, err := queryDeliveries(ctx, sqlTx, "claim deliveries",
			`SELECT `+deliveryColumns+` FROM deliveries
			WHERE state = 'pending' AND due <= ? AND claimed_until <= ?
			ORDER BY due, created, rowid`+lim, append([]any{toNanos(now), toNanos(now)}, limArgs...)...)
		if err != nil {
			return err
		}
		if len(claimed) == 0 {
			return nil
		}
		args := []any{toNanos(until)}
		for _, d := range claimed {
			args = append(args, d.ID)
		}
		if _, err := sqlTx.ExecContext(ctx, `UPDATE deliveries SET claimed_until = ? WHERE id IN (`+placeholders(len(claimed))+`)`, args...); err != nil {
			return fmt.Errorf("alarmdb: claim deliveries: %w", err)
		}
		out = claimed
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// NextDue is the earliest due time of a pending delivery (zero if none). A
// pending delivery enqueued without a due time is reported as due at the
// unix epoch, so it is never mistaken for "none".
func (db *DB) NextDue(ctx context.Context) (time.Time, error) {
	var due sql.NullInt64
	if err := db.r.QueryRowContext(ctx, `SELECT MIN(due) FROM deliveries WHERE state = 'pending'`).Scan(&due); err != nil {
		return time.Time{}, fmt.Errorf("alarmdb: next due: %w", err)
	}
	if !due.Valid {
		return time.Time{}, nil
	}
	if due.Int64 == 0 {
		return time.Unix(0, 0).UTC(), nil
	}
	return fromNanos(due.Int64), nil
}

// Enqueue adds a delivery; one whose ID exists is ignored (replays). An
// empty State is stored as pending.
func (t *tx) Enqueue(d alarm.Delivery) error {
	if d.ID == "" {
		return errors.New("alarmdb: enqueue: empty id")
	}
	if d.State == "" {
		d.State = alarm.Pending
	}
	if err := checkDeliveryState(d.State); err != nil {
		return fmt.Errorf("alarmdb: enqueue %s: %w", d.ID, err)
	}
	if err := checkTimes(d.Created, d.Due, d.Delivered); err != nil {
		return fmt.Errorf("alarmdb: enqueue %s: %w", d.ID, err)
	}
	_, err := t.q.ExecContext(t.ctx, `INSERT INTO deliveries(`+deliveryColumns+`) VALUES (`+placeholders(12)+`)
		ON CONFLICT(id) DO NOTHING`,
		d.ID, d.Alarm, d.Event, d.Recipient, d.Body, toNanos(d.Created), toNanos(d.Due), d.Attempts,
		string(d.State), d.LastError, d.Receipt, toNanos(d.Delivered))
	if err != nil {
		return fmt.Errorf("alarmdb: enqueue %s: %w", d.ID, err)
	}
	return nil
}

// FinishDelivery records an attempt: state, attempts, last error, receipt,
// delivered time and, while still pending, the next due time. It ends the
// lease. alarm.ErrNotFound if the delivery does not exist.
func (t *tx) FinishDelivery(d alarm.Delivery) error {
	if err := checkDeliveryState(d.State); err != nil {
		return fmt.Errorf("alarmdb: finish delivery %s: %w", d.ID, err)
	}
	if err := checkTimes(d.Due, d.Delivered); err != nil {
		return fmt.Errorf("alarmdb: finish delivery %s: %w", d.ID, err)
	}
	res, err := t.q.ExecContext(t.ctx, `UPDATE deliveries SET state = ?, attempts = ?, last_error = ?, receipt = ?, delivered = ?,
		due = CASE WHEN ? = 'pending' THEN ? ELSE due END, claimed_until = 0
		WHERE id = ?`,
		string(d.State), d.Attempts, d.LastError, d.Receipt, toNanos(d.Delivered), string(d.State), toNanos(d.Due), d.ID)
	if err != nil {
		return fmt.Errorf("alarmdb: finish delivery %s: %w", d.ID, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("alarmdb: finish delivery %s: %w", d.ID, err)
	}
	if n == 0 {
		return fmt.Errorf("alarmdb: finish delivery %s: %w", d.ID, alarm.ErrNotFound)
	}
	return nil
}

// CountDeliveries counts an episode's deliveries in a state.
func (t *tx) CountDeliveries(alarmID string, state alarm.DeliveryState) (int, error) {
	var n int
	if err := t.q.QueryRowContext(t.ctx, `SELECT COUNT(*) FROM deliveries WHERE alarm = ? AND state = ?`, alarmID, string(state)).Scan(&n); err != nil {
		return 0, fmt.Errorf("alarmdb: count deliveries of %s: %w", alarmID, err)
	}
	return n, nil
}
