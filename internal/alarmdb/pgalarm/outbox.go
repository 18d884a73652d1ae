package pgalarm

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tendhealth/tend/internal/alarm"
)

const deliveryColumns = `id, alarm, event, recipient, body, created, due, attempts, state, last_error, receipt, delivered`

func scanDelivery(row pgx.Row) (alarm.Delivery, error) {
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

func queryDeliveries(ctx context.Context, q querier, what, query string, args ...any) ([]alarm.Delivery, error) {
	rows, err := q.Query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("pgalarm: %s: %w", what, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (alarm.Delivery, error) { return scanDelivery(r) })
	if err != nil {
		return nil, fmt.Errorf("pgalarm: %s: %w", what, err)
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
	return queryDeliveries(ctx, db.pool, "deliveries of "+alarmID,
		`SELECT `+deliveryColumns+` FROM alarm_deliveries WHERE alarm = $1 ORDER BY created, seq`, alarmID)
}

// claimQuery leases rows in one statement. FOR UPDATE SKIP LOCKED passes
// over rows another node is claiming right now, and a row another node has
// claimed and committed since this statement began is re-checked against
// claimed_until once locked, so it drops out: no two claimers ever hold one
// row. RETURNING has no order, hence the outer ORDER BY.
const claimQuery = `WITH claimed AS (
	UPDATE alarm_deliveries SET claimed_until = $1
	WHERE id IN (
		SELECT id FROM alarm_deliveries
		WHERE state = 'pending' AND due <= $2 AND claimed_until <= $2
		ORDER BY due, created, seq
		LIMIT $3
		FOR UPDATE SKIP LOCKED)
	RETURNING ` + deliveryColumns + `, seq)
SELECT ` + deliveryColumns + ` FROM claimed ORDER BY due, created, seq`

// ClaimDeliveries leases up to limit pending deliveries due by now whose
// lease has ended (limit <= 0: all of them), earliest due first. A lease
// ends at now+lease or at FinishDelivery. Claimers on other nodes never get
// the same row during its lease.
func (db *DB) ClaimDeliveries(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]alarm.Delivery, error) {
	until := now.Add(lease)
	if err := checkTimes(now, until); err != nil {
		return nil, fmt.Errorf("pgalarm: claim deliveries: %w", err)
	}
	if lease <= 0 {
		return nil, fmt.Errorf("pgalarm: claim deliveries: lease %s must be positive", lease)
	}
	return queryDeliveries(ctx, db.pool, "claim deliveries", claimQuery, toNanos(until), toNanos(now), sqlLimit(limit))
}

// NextDue is the earliest due time of a pending delivery (zero if none). A
// pending delivery enqueued without a due time is reported as due at the
// unix epoch, so it is never mistaken for "none".
func (db *DB) NextDue(ctx context.Context) (time.Time, error) {
	var due *int64
	if err := db.pool.QueryRow(ctx, `SELECT MIN(due) FROM alarm_deliveries WHERE state = 'pending'`).Scan(&due); err != nil {
		return time.Time{}, fmt.Errorf("pgalarm: next due: %w", err)
	}
	if due == nil {
		return time.Time{}, nil
	}
	if *due == 0 {
		return time.Unix(0, 0).UTC(), nil
	}
	return fromNanos(*due), nil
}

// Enqueue adds a delivery; one whose ID exists is ignored (replays). An
// empty State is stored as pending.
func (t *tx) Enqueue(d alarm.Delivery) error {
	if d.ID == "" {
		return errors.New("pgalarm: enqueue: empty id")
	}
	if d.State == "" {
		d.State = alarm.Pending
	}
	if err := checkDeliveryState(d.State); err != nil {
		return fmt.Errorf("pgalarm: enqueue %s: %w", d.ID, err)
	}
	if err := checkTimes(d.Created, d.Due, d.Delivered); err != nil {
		return fmt.Errorf("pgalarm: enqueue %s: %w", d.ID, err)
	}
	_, err := t.q.Exec(t.ctx, `INSERT INTO alarm_deliveries(`+deliveryColumns+`) VALUES (`+params(1, 12)+`)
		ON CONFLICT (id) DO NOTHING`,
		d.ID, d.Alarm, d.Event, d.Recipient, d.Body, toNanos(d.Created), toNanos(d.Due), d.Attempts,
		string(d.State), d.LastError, d.Receipt, toNanos(d.Delivered))
	if err != nil {
		return fmt.Errorf("pgalarm: enqueue %s: %w", d.ID, err)
	}
	return nil
}

// FinishDelivery records an attempt: state, attempts, last error, receipt,
// delivered time and, while still pending, the next due time. It ends the
// lease. alarm.ErrNotFound if the delivery does not exist.
func (t *tx) FinishDelivery(d alarm.Delivery) error {
	if err := checkDeliveryState(d.State); err != nil {
		return fmt.Errorf("pgalarm: finish delivery %s: %w", d.ID, err)
	}
	if err := checkTimes(d.Due, d.Delivered); err != nil {
		return fmt.Errorf("pgalarm: finish delivery %s: %w", d.ID, err)
	}
	tag, err := t.q.Exec(t.ctx, `UPDATE alarm_deliveries SET state = $1, attempts = $2, last_error = $3, receipt = $4, delivered = $5,
		due = CASE WHEN $1 = 'pending' THEN $6 ELSE due END, claimed_until = 0
		WHERE id = $7`,
		string(d.State), d.Attempts, d.LastError, d.Receipt, toNanos(d.Delivered), toNanos(d.Due), d.ID)
	if err != nil {
		return fmt.Errorf("pgalarm: finish delivery %s: %w", d.ID, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("pgalarm: finish delivery %s: %w", d.ID, alarm.ErrNotFound)
	}
	return nil
}

// CountDeliveries counts an episode's deliveries in a state.
func (t *tx) CountDeliveries(alarmID string, state alarm.DeliveryState) (int, error) {
	var n int
	if err := t.q.QueryRow(t.ctx, `SELECT COUNT(*) FROM alarm_deliveries WHERE alarm = $1 AND state = $2`, alarmID, string(state)).Scan(&n); err != nil {
		return 0, fmt.Errorf("pgalarm: count deliveries of %s: %w", alarmID, err)
	}
	return n, nil
}
