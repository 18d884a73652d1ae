// Package alarm turns rule conditions into alarm episodes and gets them to
// people. An episode is a persisted state machine
//
//	active ──ack──▶ acknowledged ──(condition clear)──▶ resolved
//	   └──────────(condition clear, not latching)─────────▲
//	   └──────────────────resolve─────────────────────────┘
//
// with one open episode per patient, rule and subject: a condition that
// persists or returns while its episode is open does not raise another.
// High-priority alarms and events latch: they stay active after the
// condition clears until someone acknowledges them. Every change is kept in
// the episode's history with who, when and why.
//
// Notifications go through a durable outbox: a change that needs telling
// someone writes outbox rows in the same transaction as the change, and the
// Dispatcher delivers them with retries and records receipts. Row ids are
// idempotency keys, so a restart mid-dispatch re-sends at most what was not
// yet recorded as delivered, under the same key. Escalation timers are
// columns of the episode (next_escalation), so they survive restarts and
// can be run by any node.
package alarm

import (
	"encoding/json"
	"errors"
	"time"

	"github.com/tendhealth/tend/internal/rules"
)

// State of an episode.
type State string

// States.
const (
	Active       State = "active"
	Acknowledged State = "acknowledged"
	Resolved     State = "resolved"
)

// ParseState accepts the API spelling of a state.
func ParseState(s string) (State, bool) {
	switch State(s) {
	case Active, Acknowledged, Resolved:
		return State(s), true
	}
	return "", false
}

// Alarm is one episode.
type Alarm struct {
	ID       string         `json:"id"`
	Patient  string         `json:"patient"`
	State    State          `json:"state"`
	Priority rules.Priority `json:"priority"`
	Kind     rules.Category `json:"kind"` // clinical, technical or event
	Rule     string         `json:"rule"`
	RuleKind rules.Kind     `json:"rule_kind"`
	Subject  string         `json:"subject,omitempty"`
	Name     string         `json:"name"`
	Raised   time.Time      `json:"raised"`
	Updated  time.Time      `json:"updated"`
	// Condition says whether the rule's condition still holds.
	Condition bool            `json:"condition_active"`
	Latching  bool            `json:"latching"`
	Device    string          `json:"device,omitempty"`
	Code      string          `json:"code,omitempty"`
	Value     float64         `json:"value"`
	Unit      string          `json:"unit,omitempty"`
	Message   string          `json:"message"`
	Detail    json.RawMessage `json:"detail,omitempty"`

	AckedBy      string    `json:"acknowledged_by,omitempty"`
	AckedAt      time.Time `json:"acknowledged_at,omitzero"`
	ResolvedBy   string    `json:"resolved_by,omitempty"`
	ResolvedAt   time.Time `json:"resolved_at,omitzero"`
	SnoozedUntil time.Time `json:"snoozed_until,omitzero"`
	SnoozeReason string    `json:"snooze_reason,omitempty"`

	// Tier is the escalation tier last notified; Round counts notification
	// rounds (raise, escalations, repeats) and makes outbox ids unique.
	Tier           int       `json:"tier"`
	Round          int       `json:"round"`
	NextEscalation time.Time `json:"next_escalation,omitzero"`
	Version        int       `json:"version"`
}

// Open reports whether the episode is not resolved.
func (a *Alarm) Open() bool { return a.State != Resolved }

// Change is one history entry of an episode.
type Change struct {
	Alarm  string    `json:"-"`
	At     time.Time `json:"at"`
	Action string    `json:"action"` // raised, condition_cleared, condition_returned, priority_raised, acknowledged, resolved, snoozed, escalated, repeated, notified, notification_failed
	By     string    `json:"by"`     // a user or token subject, or "system"
	Reason string    `json:"reason,omitempty"`
	Detail string    `json:"detail,omitempty"`
}

// DeliveryState of an outbox row.
type DeliveryState string

// Delivery states.
const (
	Pending   DeliveryState = "pending"
	Delivered DeliveryState = "delivered"
	Failed    DeliveryState = "failed"
)

// Delivery is one outbox row: one notification to one recipient.
type Delivery struct {
	ID        string        `json:"id"` // idempotency key
	Alarm     string        `json:"alarm"`
	Event     string        `json:"event"`     // alarm.raised, alarm.escalated, …
	Recipient string        `json:"recipient"` // webhook:ID, email:ADDR, device:ID
	Body      []byte        `json:"-"`
	Created   time.Time     `json:"created"`
	Due       time.Time     `json:"due"`
	Attempts  int           `json:"attempts"`
	State     DeliveryState `json:"state"`
	LastError string        `json:"last_error,omitempty"`
	Receipt   string        `json:"receipt,omitempty"`
	Delivered time.Time     `json:"delivered,omitzero"`
}

// Checkpoint is how far a rule evaluator has applied the stream, and the
// engine state to resume from.
type Checkpoint struct {
	Name     string // evaluator (partition) name
	Applied  uint64 // highest stream sequence whose events are applied
	Snapshot []byte // engine state as of SnapSeq
	SnapSeq  uint64
}

// Filter selects alarms for listing.
type Filter struct {
	Patient string
	// Restrict keeps only alarms of Patients (an empty Patients then
	// matches none); "" among them selects alarms about no patient. The
	// store applies it, so a page of Limit is full whenever enough
	// matching alarms exist, however many others are interleaved.
	Restrict bool
	Patients []string
	States   []State
	// NoNotices leaves out notices (KindNotice, such as the privacy
	// officer's break-glass alert), for callers who may not see them; the
	// store applies it so pages stay full.
	NoNotices bool
	Limit     int
}

// Doc is one version of a configuration document (rules or escalation of
// a care setting or a patient).
type Doc struct {
	Scope   string    `json:"scope"` // "setting:ward", "patient:p1"
	Kind    string    `json:"kind"`  // "rules" or "escalation"
	Version int       `json:"version"`
	Body    []byte    `json:"-"`
	Author  string    `json:"author"`
	Reason  string    `json:"reason,omitempty"`
	At      time.Time `json:"at"`
}

// Webhook is a registered webhook endpoint; Secret signs every delivery.
type Webhook struct {
	ID      string    `json:"id"`
	URL     string    `json:"url"`
	Secret  []byte    `json:"-"`
	Created time.Time `json:"created"`
}

// Errors stores return (wrapped).
var (
	ErrNotFound = errors.New("not found")
	// ErrConflict: the episode changed since it was read (version check).
	ErrConflict = errors.New("changed concurrently")
)
