package fhir

import (
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// FHIR Subscriptions per the Subscriptions R5 Backport IG for R4
// (http://hl7.org/fhir/uv/subscriptions-backport): an R4 Subscription whose
// criteria is a topic canonical, with the filter, heartbeat and payload
// content carried in the IG's extensions, and notifications sent as history
// Bundles whose first entry is a SubscriptionStatus (Parameters in R4).
//
// This file holds the resource grammar only: parsing and checking a posted
// Subscription, rendering a stored one, and building notification Bundles.
// Delivery (the durable outbox) is in subscription_delivery.go.

// The topics Tend defines.
const (
	// TopicVitalSign fires for every new vital-sign Observation of a patient.
	TopicVitalSign = "http://tend.health/fhir/SubscriptionTopic/vital-sign"
	// TopicAlarm fires when an alarm of a patient is raised or changes state.
	TopicAlarm = "http://tend.health/fhir/SubscriptionTopic/alarm"
)

// SubscriptionTopics are the topic canonicals a Subscription may name.
var SubscriptionTopics = []string{TopicVitalSign, TopicAlarm}

const (
	backportSD            = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
	extFilterCriteria     = backportSD + "backport-filter-criteria"
	extHeartbeatPeriod    = backportSD + "backport-heartbeat-period"
	extTimeout            = backportSD + "backport-timeout"
	extPayloadContent     = backportSD + "backport-payload-content"
	profileSubscription   = backportSD + "backport-subscription"
	profileNotification   = backportSD + "backport-subscription-notification-r4"
	profileStatus         = backportSD + "backport-subscription-status-r4"
	maxSubscriptionHeader = 10
	// minHeartbeat bounds how often an endpoint can ask to be woken.
	minHeartbeat = 10 * time.Second
	maxHeartbeat = 24 * time.Hour
)

// Payload content codes (backport-payload-content).
const (
	ContentEmpty        = "empty"
	ContentIDOnly       = "id-only"
	ContentFullResource = "full-resource"
)

// Subscription is a stored subscription: what was asked for, and who asked.
type Subscription struct {
	ID       string        `json:"id"`
	Topic    string        `json:"topic"`
	Patient  string        `json:"patient,omitempty"` // "" = every patient the owner may see
	Endpoint string        `json:"endpoint"`
	Headers  []string      `json:"headers,omitempty"`
	Content  string        `json:"content"`
	Heart    time.Duration `json:"heartbeat,omitempty"` // 0 = no heartbeats
	Reason   string        `json:"reason,omitempty"`
	End      time.Time     `json:"end,omitzero"`
	Status   string        `json:"status"` // requested, active, error, off
	Created  time.Time     `json:"created"`
	// The owner: deliveries are checked against what this principal may
	// see at delivery time.
	Owner       string   `json:"owner"`
	OwnerRole   string   `json:"owner_role"`
	OwnerOrg    string   `json:"owner_org"`
	OwnerPat    string   `json:"owner_patient,omitempty"`
	OwnerScopes []string `json:"owner_scopes,omitempty"`
	Version     int      `json:"-"`
}

// subscriptionIn is the part of an R4 Subscription Tend reads.
type subscriptionIn struct {
	ResourceType string    `json:"resourceType"`
	Status       string    `json:"status"`
	Reason       string    `json:"reason"`
	End          string    `json:"end"`
	Criteria     string    `json:"criteria"`
	CriteriaExt  *elemExt  `json:"_criteria"`
	Channel      channelIn `json:"channel"`
}

type elemExt struct {
	Extension []extension `json:"extension"`
}

type extension struct {
	URL              string  `json:"url"`
	ValueString      *string `json:"valueString,omitempty"`
	ValueCode        *string `json:"valueCode,omitempty"`
	ValueUnsignedInt *int64  `json:"valueUnsignedInt,omitempty"`
	ValuePositiveInt *int64  `json:"valuePositiveInt,omitempty"`
	ValueCanonical   *string `json:"valueCanonical,omitempty"`
}

type channelIn struct {
	Extension  []extension `json:"extension"`
	Type       string      `json:"type"`
	Endpoint   string      `json:"endpoint"`
	Payload    string      `json:"payload"`
	PayloadExt *elemExt    `json:"_payload"`
	Header     []string    `json:"header"`
}

// ParseSubscription checks a posted R4 backport Subscription and returns
// what to store (without id, owner and status). Errors are *Error with a
// message for the client.
func ParseSubscription(body []byte) (Subscription, error) {
	var in subscriptionIn
	if err := json.Unmarshal(body, &in); err != nil {
		return Subscription{}, errorf(400, "structure", "the body is not a valid Subscription: %v", err)
	}
	bad := func(format string, args ...any) (Subscription, error) {
		return Subscription{}, errorf(400, "invalid", format, args...)
	}
	if in.ResourceType != "Subscription" {
		return bad("resourceType must be Subscription")
	}
	switch in.Status {
	case "requested", "active", "":
	default:
		return bad("status must be requested (or active) when creating a Subscription")
	}
	s := Subscription{Topic: in.Criteria, Reason: in.Reason, Content: ContentIDOnly}
	if !slices.Contains(SubscriptionTopics, s.Topic) {
		return bad("criteria must be a topic Tend defines: %s", strings.Join(SubscriptionTopics, ", "))
	}
	if in.End != "" {
		t, err := time.Parse(time.RFC3339, in.End)
		if err != nil {
			return bad("end must be an instant with a time zone")
		}
		s.End = t.UTC()
	}
	if in.CriteriaExt != nil {
		for _, e := range in.CriteriaExt.Extension {
			if e.URL != extFilterCriteria {
				continue
			}
			if e.ValueString == nil {
				return bad("the filter-criteria extension needs a valueString")
			}
			p, err := parseSubscriptionFilter(*e.ValueString)
			if err != nil {
				return bad("%v", err)
			}
			if s.Patient != "" && p != s.Patient {
				return bad("only one patient filter is supported")
			}
			s.Patient = p
		}
	}
	ch := in.Channel
	if ch.Type != "rest-hook" {
		return bad("channel.type must be rest-hook")
	}
	u, err := url.Parse(ch.Endpoint)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil || u.Fragment != "" {
		return bad("channel.endpoint must be an absolute http or https URL without credentials")
	}
	s.Endpoint = ch.Endpoint
	if ch.Payload != "" && ch.Payload != contentTypeFHIR && ch.Payload != "application/json" {
		return bad("channel.payload must be application/fhir+json")
	}
	if ch.PayloadExt != nil {
		for _, e := range ch.PayloadExt.Extension {
			if e.URL != extPayloadContent {
				continue
			}
			if e.ValueCode == nil {
				return bad("the payload-content extension needs a valueCode")
			}
			switch *e.ValueCode {
			case ContentEmpty, ContentIDOnly, ContentFullResource:
				s.Content = *e.ValueCode
			default:
				return bad("payload content must be empty, id-only or full-resource")
			}
		}
	}
	if len(ch.Header) > maxSubscriptionHeader {
		return bad("at most %d channel headers", maxSubscriptionHeader)
	}
	for _, hd := range ch.Header {
		name, value, ok := strings.Cut(hd, ":")
		name = strings.TrimSpace(name)
		if !ok || name == "" || strings.ContainsAny(hd, "\r\n") || !isToken(name) || strings.TrimSpace(value) == "" {
			return bad("channel.header entries must be \"Name: value\"")
		}
		switch strings.ToLower(name) {
		case "content-type", "content-length", "host", "transfer-encoding", "connection":
			return bad("channel.header may not set %s", name)
		}
		s.Headers = append(s.Headers, hd)
	}
	for _, e := range ch.Extension {
		if e.URL != extHeartbeatPeriod {
			continue
		}
		v := e.ValueUnsignedInt
		if v == nil {
			v = e.ValuePositiveInt
		}
		if v == nil {
			return bad("the heartbeat-period extension needs a valueUnsignedInt (seconds)")
		}
		d := time.Duration(*v) * time.Second
		if d != 0 && (d < minHeartbeat || d > maxHeartbeat) {
			return bad("heartbeat period must be between %d and %d seconds", int(minHeartbeat.Seconds()), int(maxHeartbeat.Seconds()))
		}
		s.Heart = d
	}
	return s, nil
}

// isToken reports whether s is an HTTP header field name.
func isToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return s != ""
}

// parseSubscriptionFilter reads a backport filter criteria string, e.g.
// "Observation?patient=Patient/123"; only the patient filter is known.
func parseSubscriptionFilter(f string) (string, error) {
	_, q, _ := strings.Cut(f, "?")
	vals, err := url.ParseQuery(q)
	if err != nil {
		return "", fmt.Errorf("filter criteria %q is not a query", f)
	}
	var patient string
	for k, v := range vals {
		switch k {
		case "patient", "subject", "subject:Patient":
		default:
			return "", fmt.Errorf("filter criteria may only name patient, not %s", k)
		}
		if len(v) != 1 {
			return "", fmt.Errorf("filter criteria must name one patient")
		}
		patient = strings.TrimPrefix(v[0], "Patient/")
	}
	if patient == "" || !validID(patient) {
		return "", fmt.Errorf("filter criteria %q names no valid patient", f)
	}
	return patient, nil
}

// Resource renders the stored subscription as an R4 backport Subscription.
// Headers are not echoed: they usually carry the endpoint's credentials.
func (s Subscription) Resource(status string) map[string]any {
	content := s.Content
	ch := map[string]any{
		"type":     "rest-hook",
		"endpoint": s.Endpoint,
		"payload":  contentTypeFHIR,
		"_payload": map[string]any{"extension": []any{map[string]any{"url": extPayloadContent, "valueCode": content}}},
	}
	if s.Heart > 0 {
		ch["extension"] = []any{map[string]any{"url": extHeartbeatPeriod, "valueUnsignedInt": int64(s.Heart / time.Second)}}
	}
	r := map[string]any{
		"resourceType": "Subscription",
		"id":           s.ID,
		"meta":         map[string]any{"profile": []string{profileSubscription}},
		"status":       status,
		"reason":       nonEmpty(s.Reason, "Tend topic subscription"),
		"criteria":     s.Topic,
		"channel":      ch,
	}
	if s.Patient != "" {
		r["_criteria"] = map[string]any{"extension": []any{map[string]any{"url": extFilterCriteria,
			"valueString": s.filterResource() + "?patient=Patient/" + s.Patient}}}
	}
	if !s.End.IsZero() {
		r["end"] = s.End.UTC().Format(time.RFC3339)
	}
	return r
}

func (s Subscription) filterResource() string {
	if s.Topic == TopicAlarm {
		return "Flag"
	}
	return "Observation"
}

func nonEmpty(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// Notification types (SubscriptionStatus.type).
const (
	NotifyHandshake = "handshake"
	NotifyHeartbeat = "heartbeat"
	NotifyEvent     = "event-notification"
	NotifyQuery     = "query-status"
)

// SubscriptionEvent is one thing that happened that a topic may carry.
type SubscriptionEvent struct {
	Topic   string
	Patient string
	Org     string
	// Key identifies the event (a reading id, an alarm change) so a replay
	// enqueues nothing new.
	Key string
	// Focus is the resource reference, e.g. "Observation/abc".
	Focus string
	// Resource is the focus resource for full-resource subscriptions.
	Resource json.RawMessage
	At       time.Time
}

// statusParams builds the SubscriptionStatus Parameters of a notification.
// events is eventsSinceSubscriptionStart; number is the event's own number
// (0 for handshakes, heartbeats and status answers).
func statusParams(base string, s Subscription, status, typ string, events int64, number int64, ev *SubscriptionEvent, errMsg string) map[string]any {
	params := []any{
		map[string]any{"name": "subscription", "valueReference": map[string]any{"reference": base + "/Subscription/" + s.ID}},
		map[string]any{"name": "topic", "valueCanonical": s.Topic},
		map[string]any{"name": "status", "valueCode": status},
		map[string]any{"name": "type", "valueCode": typ},
		map[string]any{"name": "events-since-subscription-start", "valueString": strconv.FormatInt(events, 10)},
	}
	if ev != nil {
		parts := []any{
			map[string]any{"name": "event-number", "valueString": strconv.FormatInt(number, 10)},
			map[string]any{"name": "timestamp", "valueInstant": ev.At.UTC().Format(time.RFC3339Nano)},
		}
		if s.Content != ContentEmpty {
			parts = append(parts, map[string]any{"name": "focus", "valueReference": map[string]any{"reference": base + "/" + ev.Focus}})
		}
		params = append(params, map[string]any{"name": "notification-event", "part": parts})
	}
	if errMsg != "" {
		params = append(params, map[string]any{"name": "error", "valueCodeableConcept": map[string]any{"text": errMsg}})
	}
	return map[string]any{"resourceType": "Parameters", "meta": map[string]any{"profile": []string{profileStatus}}, "parameter": params}
}

// NotificationBundle builds a notification: a history Bundle whose first
// entry is the SubscriptionStatus and, for an event of an id-only or
// full-resource subscription, the focus resource after it.
func NotificationBundle(base, bundleID string, s Subscription, status, typ string, events, number int64, ev *SubscriptionEvent, at time.Time) ([]byte, error) {
	entries := []any{map[string]any{
		"fullUrl":  "urn:uuid:" + bundleID + "-status",
		"resource": statusParams(base, s, status, typ, events, number, ev, ""),
		"request":  map[string]any{"method": "GET", "url": base + "/Subscription/" + s.ID + "/$status"},
		"response": map[string]any{"status": "200"},
	}}
	if ev != nil && s.Content != ContentEmpty {
		e := map[string]any{
			"fullUrl":  base + "/" + ev.Focus,
			"request":  map[string]any{"method": "POST", "url": strings.SplitN(ev.Focus, "/", 2)[0]},
			"response": map[string]any{"status": "201"},
		}
		if s.Content == ContentFullResource && len(ev.Resource) > 0 {
			e["resource"] = ev.Resource
		}
		entries = append(entries, e)
	}
	b := map[string]any{
		"resourceType": "Bundle",
		"id":           bundleID,
		"meta":         map[string]any{"profile": []string{profileNotification}},
		"type":         "history",
		"timestamp":    at.UTC().Format(time.RFC3339Nano),
		"entry":        entries,
	}
	out, err := json.Marshal(b)
	if err != nil {
		return nil, fmt.Errorf("encode notification bundle: %w", err)
	}
	return out, nil
}
