package alarm

import (
	"context"
	"crypto/sha256"
	"encoding/base32"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/tendhealth/tend/internal/rules"
)

// NotificationFailure is the rule id of the technical alarm raised when
// nobody could be told about an alarm.
const NotificationFailure = "notification-failure"

// ErrState is returned for a transition the episode's state does not allow
// (acknowledging a resolved alarm); the message is for the API caller.
var ErrState = errors.New("not allowed in this state")

// Snooze limits per priority: a snoozed high-priority alarm must come back
// quickly.
var maxSnooze = map[rules.Priority]time.Duration{
	rules.PriorityHigh:   10 * time.Minute,
	rules.PriorityMedium: 30 * time.Minute,
	rules.PriorityLow:    2 * time.Hour,
}

// Config configures a Service.
type Config struct {
	Store Store
	// Escalation returns the effective escalation document of a patient
	// ("" for system alarms such as an ingest backlog).
	Escalation func(ctx context.Context, patient string) (Escalation, error)
	Now        func() time.Time
	Logger     *slog.Logger
	// OnChange, when set, is called after every committed change (live
	// fan-out). It must not block.
	OnChange func(a Alarm, action string)
	// Kick, when set, is called after new deliveries were committed.
	Kick func()
}

// Service applies rule events and people's actions to episodes.
type Service struct {
	cfg Config
	log *slog.Logger
}

// NewService returns a Service; it starts nothing.
func NewService(cfg Config) *Service {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Escalation == nil {
		cfg.Escalation = func(context.Context, string) (Escalation, error) { return Escalation{}, nil }
	}
	return &Service{cfg: cfg, log: cfg.Logger.With("component", "alarm")}
}

// committed collects what a transaction did, to announce after commit.
type committed struct {
	changes  []announce
	enqueued bool
}

type announce struct {
	a      Alarm
	action string
}

func (c *committed) note(a *Alarm, action string) {
	c.changes = append(c.changes, announce{*a, action})
}

func (s *Service) after(c *committed) {
	if s.cfg.OnChange != nil {
		for _, ch := range c.changes {
			s.cfg.OnChange(ch.a, ch.action)
		}
	}
	if c.enqueued && s.cfg.Kick != nil {
		s.cfg.Kick()
	}
}

// Apply applies rule events and records the evaluator checkpoint in one
// transaction. Events carrying a stream sequence at or below the stored
// checkpoint were applied before (a replay after restart) and are skipped,
// so no reading raises an alarm twice.
func (s *Service) Apply(ctx context.Context, cp Checkpoint, evs []rules.Event) error {
	escs, err := s.escalations(ctx, evs)
	if err != nil {
		return err
	}
	var done committed
	err = s.cfg.Store.Update(ctx, func(tx Tx) error {
		done = committed{}
		cur, err := tx.Checkpoint(cp.Name)
		if err != nil {
			return err
		}
		for _, ev := range evs {
			if ev.Seq != 0 && ev.Seq <= cur.Applied {
				continue
			}
			if err := s.applyEvent(tx, ev, escs[ev.Patient], &done); err != nil {
				return err
			}
		}
		if cp.Name != "" && (cp.Applied > cur.Applied || cp.Snapshot != nil) {
			cp.Applied = max(cp.Applied, cur.Applied)
			return tx.SetCheckpoint(cp)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("alarm: apply %d events: %w", len(evs), err)
	}
	s.after(&done)
	return nil
}

func (s *Service) escalations(ctx context.Context, evs []rules.Event) (map[string]Escalation, error) {
	out := map[string]Escalation{}
	for _, ev := range evs {
		if _, ok := out[ev.Patient]; ok {
			continue
		}
		e, err := s.cfg.Escalation(ctx, ev.Patient)
		if err != nil {
			return nil, fmt.Errorf("alarm: escalation policy of %s: %w", ev.Patient, err)
		}
		out[ev.Patient] = e
	}
	return out, nil
}

// episodeID is stable for the event that opened the episode, so a replay
// that did open it again would reuse the id rather than mint a second.
func episodeID(ev rules.Event) string {
	h := sha256.New()
	for _, s := range []string{ev.Patient, ev.Rule, ev.Subject} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(ev.Time.UnixNano()))
	binary.BigEndian.PutUint64(b[8:], ev.Seq)
	h.Write(b[:])
	return "a" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(h.Sum(nil)[:15]))
}

func (s *Service) applyEvent(tx Tx, ev rules.Event, esc Escalation, done *committed) error {
	now := s.cfg.Now().UTC()
	a, open, err := tx.OpenAlarm(ev.Patient, ev.Rule, ev.Subject)
	if err != nil {
		return err
	}
	switch ev.Type {
	case rules.Start, rules.Update:
		if !open {
			if ev.Type == rules.Update {
				return nil // the episode was resolved by hand meanwhile
			}
			return s.raise(tx, ev, esc, now, done)
		}
		var actions []string
		if ev.Type == rules.Start && !a.Condition {
			a.Condition = true
			actions = append(actions, "condition_returned")
		}
		raised := ev.Priority.Rank() > a.Priority.Rank()
		if raised {
			a.Priority = ev.Priority
			a.Latching = a.Latching || ev.Latching
			actions = append(actions, "priority_raised")
		}
		if len(actions) == 0 {
			return nil
		}
		setReading(&a, ev)
		a.Updated = now
		if err := tx.PutAlarm(&a); err != nil {
			return err
		}
		for _, act := range actions {
			if err := tx.AddChange(Change{Alarm: a.ID, At: now, Action: act, By: "system", Detail: ev.Message}); err != nil {
				return err
			}
			done.note(&a, act)
		}
		if raised && a.State == Active {
			return s.notify(tx, &a, esc, "alarm.priority_raised", a.Tier, now, done)
		}
		return nil
	case rules.Clear:
		if !open || !a.Condition {
			return nil
		}
		a.Condition = false
		a.Updated = now
		if err := tx.AddChange(Change{Alarm: a.ID, At: now, Action: "condition_cleared", By: "system", Detail: ev.Message}); err != nil {
			return err
		}
		if a.Latching && a.State == Active {
			// Latched: stays active until acknowledged.
			if err := tx.PutAlarm(&a); err != nil {
				return err
			}
			done.note(&a, "condition_cleared")
			return nil
		}
		done.note(&a, "condition_cleared")
		return s.resolve(tx, &a, esc, "system", "condition cleared", now, done)
	}
	return fmt.Errorf("alarm: unknown event type %q", ev.Type)
}

func setReading(a *Alarm, ev rules.Event) {
	a.Device, a.Code, a.Value, a.Unit, a.Message = ev.Device, ev.Code, ev.Value, ev.Unit, ev.Message
	if ev.Detail != nil {
		if b, err := json.Marshal(ev.Detail); err == nil {
			a.Detail = b
		}
	}
}

func (s *Service) raise(tx Tx, ev rules.Event, esc Escalation, now time.Time, done *committed) error {
	a := Alarm{ID: episodeID(ev), Patient: ev.Patient, State: Active, Priority: ev.Priority, Kind: ev.Category, Rule: ev.Rule,
		RuleKind: ev.Kind, Subject: ev.Subject, Name: ev.Name, Raised: now, Updated: now, Condition: true, Latching: ev.Latching}
	setReading(&a, ev)
	pl, ok := planOf(esc, &a)
	if ok && len(pl.after) > 1 {
		a.NextEscalation = now.Add(pl.after[1])
	} else if ok {
		a.NextEscalation = now.Add(pl.repeat)
	}
	if err := tx.PutAlarm(&a); err != nil {
		return err
	}
	detail := ev.Message
	if !ok {
		detail += " (no escalation policy for this priority: shown in the API and live stream only)"
	}
	if err := tx.AddChange(Change{Alarm: a.ID, At: now, Action: "raised", By: "system", Detail: detail}); err != nil {
		return err
	}
	done.note(&a, "raised")
	return s.notify(tx, &a, esc, "alarm.raised", 0, now, done)
}

// planOf picks the policy of an episode: its own recipients for a notice,
// supervisors for a notification failure or a system alarm (no patient),
// else by priority.
func planOf(esc Escalation, a *Alarm) (plan, bool) {
	if a.RuleKind == KindNotice && a.Rule != NotificationFailure {
		return noticePlan(esc, a) // addressed to named recipients (notice.go)
	}
	if a.Rule == NotificationFailure || a.Patient == "" {
		if esc.Supervisors == "" {
			return plan{}, false
		}
		return esc.plan(esc.Supervisors)
	}
	return esc.planFor(a.Priority)
}

// notify enqueues one delivery per recipient of tiers 0..upTo (or only
// tier upTo for escalations) as a new round.
func (s *Service) notify(tx Tx, a *Alarm, esc Escalation, event string, tier int, now time.Time, done *committed) error {
	pl, ok := planOf(esc, a)
	if !ok {
		return nil
	}
	var recips []string
	seen := map[string]bool{}
	from := 0
	if event == "alarm.escalated" || event == "alarm.repeated" {
		from = tier
	}
	for t := from; t <= tier && t < len(pl.tiers); t++ {
		for _, r := range pl.tiers[t] {
			if !seen[r] {
				seen[r] = true
				recips = append(recips, r)
			}
		}
	}
	if len(recips) == 0 {
		return nil
	}
	round := a.Round
	a.Round++
	if err := tx.PutAlarm(a); err != nil {
		return err
	}
	body, err := json.Marshal(struct {
		Event string `json:"event"`
		Alarm *Alarm `json:"alarm"`
	}{event, a})
	if err != nil {
		return err
	}
	for i, r := range recips {
		d := Delivery{ID: fmt.Sprintf("%s-%d-%d", a.ID, round, i), Alarm: a.ID, Event: event, Recipient: r, Body: body,
			Created: now, Due: now, State: Pending}
		if err := tx.Enqueue(d); err != nil {
			return err
		}
	}
	done.enqueued = true
	return nil
}

func (s *Service) resolve(tx Tx, a *Alarm, esc Escalation, by, reason string, now time.Time, done *committed) error {
	a.State = Resolved
	a.ResolvedBy, a.ResolvedAt = by, now
	a.NextEscalation = time.Time{}
	a.Updated = now
	if err := tx.PutAlarm(a); err != nil {
		return err
	}
	if err := tx.AddChange(Change{Alarm: a.ID, At: now, Action: "resolved", By: by, Reason: reason}); err != nil {
		return err
	}
	done.note(a, "resolved")
	if a.Round == 0 {
		return nil // nobody was told it started
	}
	return s.notify(tx, a, esc, "alarm.resolved", a.Tier, now, done)
}

// Action is something a person does to an alarm.
type Action struct {
	By     string        // user or token subject
	Reason string        // free text, kept in the history
	For    time.Duration // snooze length
}

// Acknowledge moves an active alarm to acknowledged (and resolved if its
// condition has already cleared). Acknowledging an acknowledged alarm
// changes nothing.
func (s *Service) Acknowledge(ctx context.Context, id string, act Action) (Alarm, error) {
	return s.act(ctx, id, func(tx Tx, a *Alarm, esc Escalation, now time.Time, done *committed) error {
		switch a.State {
		case Resolved:
			return fmt.Errorf("%w: the alarm is already resolved", ErrState)
		case Acknowledged:
			return nil
		}
		a.State = Acknowledged
		a.AckedBy, a.AckedAt = act.By, now
		a.NextEscalation, a.SnoozedUntil, a.SnoozeReason = time.Time{}, time.Time{}, ""
		a.Updated = now
		if err := tx.PutAlarm(a); err != nil {
			return err
		}
		if err := tx.AddChange(Change{Alarm: a.ID, At: now, Action: "acknowledged", By: act.By, Reason: act.Reason}); err != nil {
			return err
		}
		done.note(a, "acknowledged")
		if !a.Condition {
			return s.resolve(tx, a, esc, act.By, "acknowledged after the condition cleared", now, done)
		}
		if a.Round > 1 { // tell the others an escalation is being handled
			return s.notify(tx, a, esc, "alarm.acknowledged", a.Tier, now, done)
		}
		return nil
	})
}

// Resolve ends an episode by hand. If the condition still holds, a new
// episode starts only after it clears and returns.
func (s *Service) Resolve(ctx context.Context, id string, act Action) (Alarm, error) {
	return s.act(ctx, id, func(tx Tx, a *Alarm, esc Escalation, now time.Time, done *committed) error {
		if a.State == Resolved {
			return fmt.Errorf("%w: the alarm is already resolved", ErrState)
		}
		reason := act.Reason
		if a.Condition {
			reason = strings.TrimSpace(reason + " (condition still active)")
		}
		return s.resolve(tx, a, esc, act.By, reason, now, done)
	})
}

// Snooze pauses notifications and escalation of an active alarm for a
// while (with a reason, at most the priority's limit); when it expires the
// current tier is told again.
func (s *Service) Snooze(ctx context.Context, id string, act Action) (Alarm, error) {
	return s.act(ctx, id, func(tx Tx, a *Alarm, esc Escalation, now time.Time, done *committed) error {
		if a.State != Active {
			return fmt.Errorf("%w: only an active alarm can be snoozed", ErrState)
		}
		if strings.TrimSpace(act.Reason) == "" {
			return fmt.Errorf("%w: a snooze needs a reason", ErrState)
		}
		limit := maxSnooze[a.Priority]
		if act.For <= 0 || act.For > limit {
			return fmt.Errorf("%w: a %s-priority alarm can be snoozed for at most %s", ErrState, a.Priority, limit)
		}
		a.SnoozedUntil, a.SnoozeReason = now.Add(act.For), act.Reason
		a.NextEscalation = a.SnoozedUntil
		a.Updated = now
		if err := tx.PutAlarm(a); err != nil {
			return err
		}
		if err := tx.AddChange(Change{Alarm: a.ID, At: now, Action: "snoozed", By: act.By, Reason: act.Reason, Detail: "until " + a.SnoozedUntil.Format(time.RFC3339)}); err != nil {
			return err
		}
		done.note(a, "snoozed")
		return nil
	})
}

func (s *Service) act(ctx context.Context, id string, fn func(Tx, *Alarm, Escalation, time.Time, *committed) error) (Alarm, error) {
	cur, err := s.cfg.Store.Alarm(ctx, id)
	if err != nil {
		return Alarm{}, err
	}
	esc, err := s.cfg.Escalation(ctx, cur.Patient)
	if err != nil {
		return Alarm{}, err
	}
	var out Alarm
	var done committed
	err = s.cfg.Store.Update(ctx, func(tx Tx) error {
		done = committed{}
		a, err := tx.Alarm(id)
		if err != nil {
			return err
		}
		if err := fn(tx, &a, esc, s.cfg.Now().UTC(), &done); err != nil {
			return err
		}
		out = a
		return nil
	})
	if err != nil {
		return Alarm{}, err
	}
	s.after(&done)
	return out, nil
}

// Escalate runs the escalation timers that are due: next tier, repeat
// after the last tier, or the end of a snooze. It returns how many alarms
// it moved. Any node may run it; the version check on each episode makes
// two nodes racing for the same timer harmless.
func (s *Service) Escalate(ctx context.Context) (int, error) {
	now := s.cfg.Now().UTC()
	due, err := s.cfg.Store.DueEscalations(ctx, now, 100)
	if err != nil {
		return 0, fmt.Errorf("alarm: due escalations: %w", err)
	}
	moved := 0
	for _, d := range due {
		esc, err := s.cfg.Escalation(ctx, d.Patient)
		if err != nil {
			return moved, err
		}
		var done committed
		err = s.cfg.Store.Update(ctx, func(tx Tx) error {
			done = committed{}
			a, err := tx.Alarm(d.ID)
			if err != nil {
				return err
			}
			if a.State != Active || a.NextEscalation.IsZero() || a.NextEscalation.After(now) {
				return nil // acknowledged or moved meanwhile
			}
			return s.escalate(tx, &a, esc, now, &done)
		})
		if errors.Is(err, ErrConflict) {
			continue
		}
		if err != nil {
			return moved, fmt.Errorf("alarm: escalate %s: %w", d.ID, err)
		}
		moved++
		s.after(&done)
	}
	return moved, nil
}

func (s *Service) escalate(tx Tx, a *Alarm, esc Escalation, now time.Time, done *committed) error {
	return s.escalateBy(tx, a, esc, now, "system", "", done)
}

// escalateBy is the timed step, also taken by hand (EscalateNow, who and
// why kept in the history).
func (s *Service) escalateBy(tx Tx, a *Alarm, esc Escalation, now time.Time, by, reason string, done *committed) error {
	pl, ok := planOf(esc, a)
	if !ok {
		a.NextEscalation = time.Time{}
		return tx.PutAlarm(a)
	}
	action, event := "", ""
	switch {
	case !a.SnoozedUntil.IsZero():
		a.SnoozedUntil, a.SnoozeReason = time.Time{}, ""
		action, event = "snooze_expired", "alarm.repeated"
	case a.Tier+1 < len(pl.tiers):
		a.Tier++
		action, event = "escalated", "alarm.escalated"
	default:
		action, event = "repeated", "alarm.repeated"
	}
	if a.Tier+1 < len(pl.after) {
		a.NextEscalation = a.Raised.Add(pl.after[a.Tier+1])
		if !a.NextEscalation.After(now) {
			a.NextEscalation = now.Add(pl.after[a.Tier+1] - pl.after[a.Tier])
		}
	} else {
		a.NextEscalation = now.Add(pl.repeat)
	}
	a.Updated = now
	if err := tx.PutAlarm(a); err != nil {
		return err
	}
	if err := tx.AddChange(Change{Alarm: a.ID, At: now, Action: action, By: by, Reason: reason, Detail: fmt.Sprintf("tier %d", a.Tier+1)}); err != nil {
		return err
	}
	done.note(a, action)
	return s.notify(tx, a, esc, event, a.Tier, now, done)
}

// deliveryFailed records a delivery that will not be retried and, when it
// leaves its alarm with nobody told, raises a notification-failure alarm
// for the supervisors (never for a notification failure itself).
func (s *Service) deliveryFailed(ctx context.Context, d Delivery) error {
	cur, err := s.cfg.Store.Alarm(ctx, d.Alarm)
	if err != nil {
		return err
	}
	esc, err := s.cfg.Escalation(ctx, cur.Patient)
	if err != nil {
		return err
	}
	var done committed
	err = s.cfg.Store.Update(ctx, func(tx Tx) error {
		done = committed{}
		now := s.cfg.Now().UTC()
		if err := tx.FinishDelivery(d); err != nil {
			return err
		}
		if err := tx.AddChange(Change{Alarm: d.Alarm, At: now, Action: "notification_failed", By: "system", Detail: d.Recipient + ": " + d.LastError}); err != nil {
			return err
		}
		done.note(&cur, "notification_failed")
		if cur.Rule == NotificationFailure {
			s.log.Error("a notification-failure alarm could not be delivered either", "alarm", d.Alarm, "recipient", d.Recipient)
			return nil
		}
		delivered, err := tx.CountDeliveries(d.Alarm, Delivered)
		if err != nil {
			return err
		}
		pending, err := tx.CountDeliveries(d.Alarm, Pending)
		if err != nil {
			return err
		}
		if delivered > 0 || pending > 0 {
			return nil
		}
		ev := rules.Event{Type: rules.Start, Patient: cur.Patient, Rule: NotificationFailure, Subject: cur.ID,
			Name: "Notification failure", Kind: rules.KindEvent, Category: rules.CategoryTechnical, Priority: rules.PriorityHigh,
			Latching: true, Time: now, Message: fmt.Sprintf("Nobody could be told about %q (%s priority, alarm %s)", cur.Name, cur.Priority, cur.ID)}
		return s.applyEvent(tx, ev, esc, &done)
	})
	if err != nil {
		return fmt.Errorf("alarm: record failed delivery %s: %w", d.ID, err)
	}
	s.after(&done)
	return nil
}

// External is an alarm raised outside the rule engine: a device-reported
// alarm (IHE PCD-04 over HL7), or an operator's manual alarm.
type External struct {
	Patient  string
	Device   string
	Source   string // e.g. "hl7"
	Code     string // the device's alarm code
	Text     string
	Priority rules.Priority
	Active   bool // false: the device says the condition ended
	Time     time.Time
}

// RaiseExternal applies a device-reported alarm state: one episode per
// patient, device and alarm code, latching like events.
func (s *Service) RaiseExternal(ctx context.Context, x External) error {
	if x.Priority.Rank() == 0 {
		return fmt.Errorf("alarm: external alarm priority %q is not high, medium or low", x.Priority)
	}
	typ := rules.Clear
	if x.Active {
		typ = rules.Start
	}
	ev := rules.Event{Type: typ, Patient: x.Patient, Rule: "device-alarm", Subject: x.Device + "/" + x.Code, Name: "Device alarm",
		Kind: rules.KindEvent, Category: rules.CategoryEvent, Priority: x.Priority, Latching: true, Device: x.Device, Code: x.Code,
		Time: x.Time, Message: fmt.Sprintf("%s (%s via %s)", x.Text, x.Device, x.Source)}
	return s.Apply(ctx, Checkpoint{}, []rules.Event{ev})
}
