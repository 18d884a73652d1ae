package alarm

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// EscalateNow moves an active or acknowledged alarm to its next escalation
// tier at once, as when a nurse at the bedside wants the doctor now rather
// than when the timer says. The step is the timed one (escalateBy): the
// next tier is told through the outbox with "alarm.escalated", and the
// history records who asked and why (a reason is required).
//
// A snoozed alarm wakes up: someone decided it cannot wait. An
// acknowledged alarm stays acknowledged and keeps its timers stopped:
// somebody is handling it and has asked for help, so nobody else needs to
// be paged automatically. At the last tier, or without an escalation
// policy, it answers ErrState.
func (s *Service) EscalateNow(ctx context.Context, id string, act Action) (Alarm, error) {
	return s.act(ctx, id, func(tx Tx, a *Alarm, esc Escalation, now time.Time, done *committed) error {
		if a.State == Resolved {
			return fmt.Errorf("%w: the alarm is already resolved", ErrState)
		}
		if strings.TrimSpace(act.Reason) == "" {
			return fmt.Errorf("%w: an escalation needs a reason", ErrState)
		}
		pl, ok := planOf(esc, a)
		if !ok {
			return fmt.Errorf("%w: no escalation policy covers this alarm", ErrState)
		}
		if a.Tier+1 >= len(pl.tiers) {
			return fmt.Errorf("%w: the alarm is already at its last escalation tier (%d of %d)", ErrState, a.Tier+1, len(pl.tiers))
		}
		// Without a snooze escalateBy takes the "next tier" branch, which
		// the check above guarantees exists.
		a.SnoozedUntil, a.SnoozeReason = time.Time{}, ""
		if err := s.escalateBy(tx, a, esc, now, act.By, act.Reason, done); err != nil {
			return err
		}
		if a.State != Acknowledged {
			return nil
		}
		a.NextEscalation = time.Time{}
		if err := tx.PutAlarm(a); err != nil {
			return err
		}
		for i := range done.changes { // announce the alarm as stored
			if done.changes[i].a.ID == a.ID {
				done.changes[i].a = *a
			}
		}
		return nil
	})
}
