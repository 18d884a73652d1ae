package node

import (
	"encoding/json"
	"fmt"

	"github.com/nats-io/nats.go"

	"github.com/tendhealth/tend/internal/alarm"
	"github.com/tendhealth/tend/internal/live"
	"github.com/tendhealth/tend/internal/reading"
)

// Subjects of the live fan-out between nodes (core NATS: best effort, like
// the live streams themselves; the durable record is the store).
const (
	liveReadingsSubject = "tend.live.readings"
	liveAlarmsSubject   = "tend.live.alarms"
)

// startLiveFanOut makes every node's live streams see what any node stored
// or changed: with an external NATS, where other nodes may write the
// readings and apply the alarms, changes go through NATS to every node's
// hub. Embedded, the node is alone and feeds its hub directly.
func (n *Node) startLiveFanOut() error {
	if len(n.cfg.NATSURLs) == 0 {
		return nil
	}
	nc, err := n.stream.Conn()
	if err != nil {
		return err
	}
	subR, err := nc.Subscribe(liveReadingsSubject, func(m *nats.Msg) {
		if !n.hub.Wants(live.TypeReading) {
			return // nobody watches readings here: skip the decoding
		}
		if rs, err := reading.DecodeBatch(m.Data); err == nil {
			n.deliverReadings(rs)
		}
	})
	if err != nil {
		return fmt.Errorf("subscribe to live readings: %w", err)
	}
	subA, err := nc.Subscribe(liveAlarmsSubject, func(m *nats.Msg) {
		var ev liveAlarm
		if json.Unmarshal(m.Data, &ev) == nil {
			n.hub.Publish(live.Event{Type: live.TypeAlarm, Patient: ev.Alarm.Patient, Data: m.Data, Notice: ev.Alarm.RuleKind == alarm.KindNotice})
		}
	})
	if err != nil {
		subR.Unsubscribe()
		return fmt.Errorf("subscribe to live alarms: %w", err)
	}
	// Live events are dropped rather than queued without bound when a
	// node's hub falls behind.
	for _, s := range []*nats.Subscription{subR, subA} {
		s.SetPendingLimits(1<<16, 64<<20)
	}
	n.liveNC = nc
	return nil
}

// publishReadings announces stored readings to the live streams.
func (n *Node) publishReadings(rs []reading.Reading) {
	if n.liveNC != nil {
		if err := n.liveNC.Publish(liveReadingsSubject, reading.EncodeBatch(rs)); err != nil {
			n.cfg.Logger.Debug("live fan-out", "err", err)
		}
		return
	}
	n.deliverReadings(rs)
}

func (n *Node) deliverReadings(rs []reading.Reading) {
	if !n.hub.Wants(live.TypeReading) {
		return
	}
	for i := range rs {
		b, err := json.Marshal(&rs[i])
		if err != nil {
			continue
		}
		n.hub.Publish(live.Event{Type: live.TypeReading, Patient: rs[i].Patient, Data: b})
	}
}

// liveAlarm is an alarm change as the live stream carries it.
type liveAlarm struct {
	Action string      `json:"action"`
	Alarm  alarm.Alarm `json:"alarm"`
}

// publishAlarm announces an alarm change to the live streams.
func (n *Node) publishAlarm(a alarm.Alarm, action string) {
	if n.hub == nil || (n.liveNC == nil && n.hub.Len() == 0) {
		return
	}
	b, err := json.Marshal(liveAlarm{action, a})
	if err != nil {
		return
	}
	if n.liveNC != nil {
		if err := n.liveNC.Publish(liveAlarmsSubject, b); err != nil {
			n.cfg.Logger.Debug("live fan-out", "err", err)
		}
		return
	}
	n.hub.Publish(live.Event{Type: live.TypeAlarm, Patient: a.Patient, Data: b, Notice: a.RuleKind == alarm.KindNotice})
}
