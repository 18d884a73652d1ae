package fhir

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tendhealth/tend/internal/access"
	"github.com/tendhealth/tend/internal/alarm"
	"github.com/tendhealth/tend/internal/auth"
	"github.com/tendhealth/tend/internal/notify"
	"github.com/tendhealth/tend/internal/store"
)

// Subscription delivery rides the alarm outbox: every handshake, heartbeat
// and event notification is an outbox row (recipient "subscription:ID"),
// written in one transaction with its event number, and the alarm
// dispatcher sends it with its retries, backoff and leases. Nothing is
// kept only in memory, so an event enqueued before a kill -9 is sent after
// the restart. Subscriptions themselves are versioned documents of the same
// store.

// RecipientKindRestHook is the notify.Mux kind of rest-hook deliveries.
const RecipientKindRestHook = "fhir-rest-hook"

const (
	subDocScope   = "fhir:subscription"
	subIndexScope = "fhir:subscriptions"
	subIndexKind  = "index"
	subDocKind    = "subscription"
	// Outbox "alarm" keys: events are counted apart from handshakes and
	// heartbeats, so eventsSinceSubscriptionStart is a count of rows.
	eventsKeyPrefix  = "fhir-subscription-events:"
	controlKeyPrefix = "fhir-subscription-control:"
)

// ErrSubscriptionGone is returned for a subscription that was deleted.
var ErrSubscriptionGone = errors.New("subscription deleted")

// Subscriptions stores FHIR subscriptions and turns events into durable
// deliveries.
type Subscriptions struct {
	Outbox alarm.Store
	// Access checks, at match and at delivery time, that the owner may see
	// the event's patient; nil delivers every match (tests of this layer).
	Access *access.Policy
	// Base is the public FHIR base URL used in references, e.g.
	// "https://tend.example/fhir".
	Base  string
	Now   func() time.Time
	Kick  func()        // wakes the dispatcher; may be nil
	NewID func() string // default store.NewID
	// Client sends rest-hook notifications; default one with a timeout.
	Client *http.Client

	mu      sync.Mutex
	cacheAt int64
	cache   []Subscription
}

func (m *Subscriptions) now() time.Time {
	if m.Now != nil {
		return m.Now().UTC()
	}
	return time.Now().UTC()
}

func (m *Subscriptions) kick() {
	if m.Kick != nil {
		m.Kick()
	}
}

// Create stores a new subscription owned by p and enqueues its handshake.
func (m *Subscriptions) Create(ctx context.Context, s Subscription, p auth.Principal) (Subscription, error) {
	newID := m.NewID
	if newID == nil {
		newID = store.NewID
	}
	s.ID = newID()
	s.Status = "requested"
	s.Created = m.now()
	s.Owner, s.OwnerRole, s.OwnerOrg, s.OwnerPat, s.OwnerScopes = p.Subject, p.Role, store.OrgOrDefault(p.Org), p.Patient, p.Scopes
	if err := m.put(ctx, &s, "created"); err != nil {
		return Subscription{}, err
	}
	if err := m.index(ctx, s.ID, true); err != nil {
		return Subscription{}, err
	}
	if err := m.enqueueControl(ctx, s, NotifyHandshake, "handshake"); err != nil {
		return Subscription{}, err
	}
	m.kick()
	return s, nil
}

func (m *Subscriptions) put(ctx context.Context, s *Subscription, why string) error {
	body, err := json.Marshal(s)
	if err != nil {
		return fmt.Errorf("encode subscription %s: %w", s.ID, err)
	}
	d := alarm.Doc{Scope: subDocScope + ":" + s.ID, Kind: subDocKind, Body: body, Author: s.Owner, Reason: why, At: m.now()}
	if err := m.Outbox.PutDoc(ctx, &d); err != nil {
		return fmt.Errorf("store subscription %s: %w", s.ID, err)
	}
	s.Version = d.Version
	return nil
}

// index adds or removes id in the list of live subscriptions.
func (m *Subscriptions) index(ctx context.Context, id string, add bool) error {
	ids, err := m.ids(ctx)
	if err != nil {
		return err
	}
	if add == slices.Contains(ids, id) {
		return nil
	}
	if add {
		ids = append(ids, id)
	} else {
		ids = slices.DeleteFunc(ids, func(s string) bool { return s == id })
	}
	body, err := json.Marshal(ids)
	if err != nil {
		return fmt.Errorf("encode subscription index: %w", err)
	}
	d := alarm.Doc{Scope: subIndexScope, Kind: subIndexKind, Body: body, Author: "system", At: m.now()}
	if err := m.Outbox.PutDoc(ctx, &d); err != nil {
		return fmt.Errorf("store subscription index: %w", err)
	}
	return nil
}

func (m *Subscriptions) ids(ctx context.Context) ([]string, error) {
	d, err := m.Outbox.Doc(ctx, subIndexScope, subIndexKind)
	if errors.Is(err, alarm.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read subscription index: %w", err)
	}
	var ids []string
	if err := json.Unmarshal(d.Body, &ids); err != nil {
		return nil, fmt.Errorf("decode subscription index: %w", err)
	}
	return ids, nil
}

// Get returns a subscription; store.ErrNotFound if there is none,
// ErrSubscriptionGone if it was deleted.
func (m *Subscriptions) Get(ctx context.Context, id string) (Subscription, error) {
	d, err := m.Outbox.Doc(ctx, subDocScope+":"+id, subDocKind)
	if errors.Is(err, alarm.ErrNotFound) {
		return Subscription{}, store.ErrNotFound
	}
	if err != nil {
		return Subscription{}, fmt.Errorf("read subscription %s: %w", id, err)
	}
	var s Subscription
	if err := json.Unmarshal(d.Body, &s); err != nil {
		return Subscription{}, fmt.Errorf("decode subscription %s: %w", id, err)
	}
	s.Version = d.Version
	if s.Status == "off" {
		return s, ErrSubscriptionGone
	}
	return s, nil
}

// Delete turns a subscription off: nothing more is enqueued for it, and
// what is still queued is dropped at delivery time.
func (m *Subscriptions) Delete(ctx context.Context, s Subscription) error {
	s.Status = "off"
	if err := m.put(ctx, &s, "deleted"); err != nil {
		return err
	}
	return m.index(ctx, s.ID, false)
}

// live lists the subscriptions that are on, cached until a document
// changes.
func (m *Subscriptions) live(ctx context.Context) ([]Subscription, error) {
	v, err := m.Outbox.DocsVersion(ctx)
	if err != nil {
		return nil, fmt.Errorf("subscriptions: %w", err)
	}
	m.mu.Lock()
	if m.cache != nil && m.cacheAt == v {
		out := m.cache
		m.mu.Unlock()
		return out, nil
	}
	m.mu.Unlock()
	ids, err := m.ids(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Subscription, 0, len(ids))
	for _, id := range ids {
		s, err := m.Get(ctx, id)
		if errors.Is(err, store.ErrNotFound) || errors.Is(err, ErrSubscriptionGone) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	m.mu.Lock()
	m.cache, m.cacheAt = out, v
	m.mu.Unlock()
	return out, nil
}

func (s Subscription) ended(now time.Time) bool { return !s.End.IsZero() && !now.Before(s.End) }

func (s Subscription) principal() auth.Principal {
	return auth.Principal{Subject: s.Owner, Role: s.OwnerRole, Org: s.OwnerOrg, Patient: s.OwnerPat, Scopes: s.OwnerScopes}
}

// visible reports whether the owner may see the patient now.
func (m *Subscriptions) visible(ctx context.Context, s Subscription, patient string) (bool, error) {
	if m.Access == nil {
		return true, nil
	}
	err := m.Access.CheckPatient(ctx, s.principal(), patient)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, access.ErrNotVisible), errors.Is(err, store.ErrNotFound):
		return false, nil
	}
	return false, fmt.Errorf("check subscription %s owner's access: %w", s.ID, err)
}

// Match enqueues a notification for every subscription the event fits:
// same topic, the filtered patient (if any), and a patient the owner may
// see. A replayed event (same Key) enqueues nothing new.
func (m *Subscriptions) Match(ctx context.Context, ev SubscriptionEvent) (int, error) {
	subs, err := m.live(ctx)
	if err != nil {
		return 0, err
	}
	now := m.now()
	n := 0
	for _, s := range subs {
		if s.Topic != ev.Topic || (s.Patient != "" && s.Patient != ev.Patient) || s.ended(now) {
			continue
		}
		if ev.Org != "" && store.OrgOrDefault(ev.Org) != s.OwnerOrg {
			continue
		}
		ok, err := m.visible(ctx, s, ev.Patient)
		if err != nil {
			return n, err
		}
		if !ok {
			continue
		}
		if err := m.enqueueEvent(ctx, s, ev, now); err != nil {
			return n, err
		}
		n++
	}
	if n > 0 {
		m.kick()
	}
	return n, nil
}

func countAll(tx alarm.Tx, key string) (int64, error) {
	var n int64
	for _, st := range []alarm.DeliveryState{alarm.Pending, alarm.Delivered, alarm.Failed} {
		c, err := tx.CountDeliveries(key, st)
		if err != nil {
			return 0, err
		}
		n += int64(c)
	}
	return n, nil
}

func (m *Subscriptions) recipient(s Subscription, patient string) string {
	r := alarm.RecipientSubscription + ":" + s.ID
	if patient != "" {
		r += ":" + patient
	}
	return r
}

func (m *Subscriptions) enqueueEvent(ctx context.Context, s Subscription, ev SubscriptionEvent, now time.Time) error {
	id := "fhirsub-" + s.ID + "-ev-" + ev.Key
	err := m.Outbox.Update(ctx, func(tx alarm.Tx) error {
		n, err := countAll(tx, eventsKeyPrefix+s.ID)
		if err != nil {
			return err
		}
		body, err := NotificationBundle(m.Base, id, s, "active", NotifyEvent, n+1, n+1, &ev, now)
		if err != nil {
			return err
		}
		return tx.Enqueue(alarm.Delivery{ID: id, Alarm: eventsKeyPrefix + s.ID, Event: "fhir.subscription.event",
			Recipient: m.recipient(s, ev.Patient), Body: body, Created: now, Due: now})
	})
	if err != nil {
		return fmt.Errorf("enqueue subscription %s event: %w", s.ID, err)
	}
	return nil
}

// enqueueControl enqueues a handshake or heartbeat; key makes it unique
// (two nodes enqueueing the same heartbeat period store it once).
func (m *Subscriptions) enqueueControl(ctx context.Context, s Subscription, typ, key string) error {
	now := m.now()
	id := "fhirsub-" + s.ID + "-" + key
	err := m.Outbox.Update(ctx, func(tx alarm.Tx) error {
		n, err := countAll(tx, eventsKeyPrefix+s.ID)
		if err != nil {
			return err
		}
		status := "active"
		if typ == NotifyHandshake {
			status = "requested"
		}
		body, err := NotificationBundle(m.Base, id, s, status, typ, n, 0, nil, now)
		if err != nil {
			return err
		}
		return tx.Enqueue(alarm.Delivery{ID: id, Alarm: controlKeyPrefix + s.ID, Event: "fhir.subscription." + typ,
			Recipient: m.recipient(s, ""), Body: body, Created: now, Due: now})
	})
	if err != nil {
		return fmt.Errorf("enqueue subscription %s %s: %w", s.ID, typ, err)
	}
	return nil
}

// Heartbeats enqueues the heartbeat of every subscription whose period has
// elapsed since it was created (one per period, numbered, so every node may
// call this). Call it every few seconds.
func (m *Subscriptions) Heartbeats(ctx context.Context) (int, error) {
	subs, err := m.live(ctx)
	if err != nil {
		return 0, err
	}
	now := m.now()
	n := 0
	for _, s := range subs {
		if s.Heart <= 0 || s.ended(now) {
			continue
		}
		k := int64(now.Sub(s.Created) / s.Heart)
		if k < 1 {
			continue
		}
		if err := m.enqueueControl(ctx, s, NotifyHeartbeat, fmt.Sprintf("hb-%d", k)); err != nil {
			return n, err
		}
		n++
	}
	if n > 0 {
		m.kick()
	}
	return n, nil
}

// SubscriptionState is what $status reports.
type SubscriptionState struct {
	Status    string // requested, active, error, off
	Events    int64  // eventsSinceSubscriptionStart
	Delivered int
	Pending   int
	Failed    int
	LastError string
}

// State derives the status from the outbox: requested until the handshake
// is delivered, error while the newest attempt failed, else active.
func (m *Subscriptions) State(ctx context.Context, s Subscription) (SubscriptionState, error) {
	st := SubscriptionState{Status: "active"}
	if s.Status == "off" {
		st.Status = "off"
	}
	var all []alarm.Delivery
	for _, key := range []string{controlKeyPrefix + s.ID, eventsKeyPrefix + s.ID} {
		ds, err := m.Outbox.Deliveries(ctx, key)
		if err != nil {
			return st, fmt.Errorf("subscription %s status: %w", s.ID, err)
		}
		if key == eventsKeyPrefix+s.ID {
			st.Events = int64(len(ds))
		}
		all = append(all, ds...)
	}
	handshaken, failing := false, false
	var lastOK, lastBad time.Time
	for _, d := range all {
		switch {
		case d.State == alarm.Delivered:
			st.Delivered++
			if d.Event == "fhir.subscription."+NotifyHandshake {
				handshaken = true
			}
			if d.Delivered.After(lastOK) {
				lastOK = d.Delivered
			}
		case d.State == alarm.Failed:
			st.Failed++
			if d.Created.After(lastBad) {
				lastBad, st.LastError = d.Created, d.LastError
			}
		default:
			st.Pending++
			if d.LastError != "" {
				// Still being retried: failing right now.
				failing, st.LastError = true, d.LastError
			}
		}
	}
	switch {
	case st.Status == "off":
	case failing || lastBad.After(lastOK) || (!lastBad.IsZero() && lastOK.IsZero()):
		st.Status = "error"
	case !handshaken:
		st.Status = "requested"
	}
	return st, nil
}

// Resolve turns "subscription:ID[:PATIENT]" into where to send, refusing
// (permanently) a deleted or ended subscription and a patient the owner may
// no longer see.
func (m *Subscriptions) Resolve(ctx context.Context, recipient string) (notify.Recipient, error) {
	rest, ok := strings.CutPrefix(recipient, alarm.RecipientSubscription+":")
	if !ok {
		return notify.Recipient{}, notify.Permanent(fmt.Errorf("not a subscription recipient: %q", recipient))
	}
	id, patient, _ := strings.Cut(rest, ":")
	s, err := m.Get(ctx, id)
	if errors.Is(err, store.ErrNotFound) || errors.Is(err, ErrSubscriptionGone) {
		return notify.Recipient{}, notify.Permanent(fmt.Errorf("subscription %s is deleted", id))
	}
	if err != nil {
		return notify.Recipient{}, err
	}
	if s.ended(m.now()) {
		return notify.Recipient{}, notify.Permanent(fmt.Errorf("subscription %s has ended", id))
	}
	if patient != "" {
		ok, err := m.visible(ctx, s, patient)
		if err != nil {
			return notify.Recipient{}, err
		}
		if !ok {
			return notify.Recipient{}, notify.Permanent(fmt.Errorf("subscription %s: the owner may no longer see the patient", id))
		}
	}
	// The channel headers often hold the endpoint's credentials: they
	// travel as the recipient's secret, which is never logged.
	hdr, err := json.Marshal(s.Headers)
	if err != nil {
		return notify.Recipient{}, fmt.Errorf("encode subscription %s headers: %w", id, err)
	}
	return notify.Recipient{Kind: RecipientKindRestHook, Address: s.Endpoint, Secret: hdr}, nil
}

// Send posts one notification Bundle to a rest-hook endpoint. Any 2xx is a
// receipt; 410 Gone is permanent; everything else is retried.
func (m *Subscriptions) Send(ctx context.Context, to notify.Recipient, msg notify.Message) (notify.Receipt, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, to.Address, bytes.NewReader(msg.Body))
	if err != nil {
		return notify.Receipt{}, notify.Permanent(fmt.Errorf("rest-hook request: %w", err))
	}
	var headers []string
	if len(to.Secret) > 0 {
		if err := json.Unmarshal(to.Secret, &headers); err != nil {
			return notify.Receipt{}, notify.Permanent(fmt.Errorf("rest-hook headers: %w", err))
		}
	}
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ":")
		req.Header.Add(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	req.Header.Set("Content-Type", contentTypeFHIR)
	req.Header.Set("X-Tend-Delivery", msg.ID)
	client := m.Client
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	resp, err := client.Do(req)
	if err != nil {
		return notify.Receipt{}, fmt.Errorf("rest-hook %s: %w", to.Address, err)
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return notify.Receipt{At: m.now(), Detail: fmt.Sprintf("HTTP %d", resp.StatusCode)}, nil
	case resp.StatusCode == http.StatusGone:
		return notify.Receipt{}, notify.Permanent(fmt.Errorf("rest-hook answered HTTP %d", resp.StatusCode))
	}
	return notify.Receipt{}, fmt.Errorf("rest-hook answered HTTP %d", resp.StatusCode)
}
