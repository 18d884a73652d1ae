package bench

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"
)

// mqttTarget is one simulated MQTT device.
type mqttTarget struct {
	broker             string
	clientID, username string
	password, topic    string
}

// mqttLoad holds the connected clients of one run.
type mqttLoad struct {
	cfg     Config
	targets []mqttTarget
	clients []mqtt.Client
	lost    atomic.Int64 // connections lost during the run
}

// connect opens every connection, a few at a time; any failure closes the
// ones already open and fails the run, since a partial fleet would measure
// something else.
func (m *mqttLoad) connect(ctx context.Context) error {
	m.clients = make([]mqtt.Client, len(m.targets))
	err := forEach(ctx, len(m.targets), m.cfg.SetupConcurrency, func(ctx context.Context, i int) error {
		t := m.targets[i]
		o := mqtt.NewClientOptions().
			AddBroker(t.broker).
			SetClientID(t.clientID).
			SetCleanSession(true).
			SetOrderMatters(false). // acks are tracked per message; no need to serialise callbacks
			SetAutoReconnect(false).
			SetConnectRetry(false).
			SetConnectTimeout(10 * time.Second).
			SetKeepAlive(30 * time.Second).
			SetWriteTimeout(10 * time.Second).
			SetConnectionLostHandler(func(mqtt.Client, error) { m.lost.Add(1) })
		if t.username != "" {
			o.SetUsername(t.username).SetPassword(t.password)
		}
		c := mqtt.NewClient(o)
		tok := c.Connect()
		select {
		case <-tok.Done():
		case <-ctx.Done():
			return ctx.Err()
		}
		if err := tok.Error(); err != nil {
			return fmt.Errorf("mqtt connect %s as device %d: %w", t.broker, i, explainConnect(err))
		}
		m.clients[i] = c
		return nil
	})
	if err != nil {
		m.disconnect()
	}
	return err
}

func explainConnect(err error) error {
	switch {
	case errors.Is(err, packets.ErrorRefusedNotAuthorised), errors.Is(err, packets.ErrorRefusedBadUsernameOrPassword):
		return fmt.Errorf("%w (the device credentials were refused)", err)
	}
	return err
}

func (m *mqttLoad) disconnect() {
	for _, c := range m.clients {
		if c != nil {
			c.Disconnect(250)
		}
	}
}

// run sends the load over the open connections and returns one tally per
// device plus how far reading times ran ahead of the clock.
func (m *mqttLoad) run(p *phases) ([]*tally, time.Duration) {
	tallies := make([]*tally, len(m.clients))
	leads := make([]time.Duration, len(m.clients))
	var msgRate float64
	if m.cfg.Rate > 0 {
		msgRate = m.cfg.Rate / float64(m.cfg.ReadingsPerMessage) / float64(len(m.clients))
	}
	var wg sync.WaitGroup
	for i, c := range m.clients {
		tallies[i] = &tally{}
		// Stagger paced devices so they do not all send in the same instant.
		start := p.start
		if msgRate > 0 {
			start = start.Add(time.Duration(float64(i) / float64(len(m.clients)) / msgRate * float64(time.Second)))
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			leads[i] = m.device(p, c, m.targets[i].topic, newPacer(msgRate, start), tallies[i])
		}()
	}
	wg.Wait()
	if n := m.lost.Load(); n > 0 {
		tallies[0].fail(fmt.Errorf("%d MQTT connections were lost during the run", n))
	}
	return tallies, max(slicesMax(leads), 0)
}

type inflight struct {
	tok  mqtt.Token
	sent time.Time
	slot int
}

// device publishes one device's messages. The in-flight window is a pool of
// payload buffers: paho keeps a reference to a payload until its PUBACK, so a
// buffer is reused only after its message was acknowledged. A second
// goroutine takes acks in publish order; brokers ack a connection's QoS 1
// messages in order, so this measures each ack without a goroutine per
// message (an out-of-order ack would be counted late, never early).
func (m *mqttLoad) device(p *phases, c mqtt.Client, topic string, pc *pacer, t *tally) time.Duration {
	n := m.cfg.InflightPerDevice
	per := m.cfg.ReadingsPerMessage
	bufs := make([][]byte, n)
	free := make(chan int, n)
	for i := range n {
		free <- i
	}
	pending := make(chan inflight, n)
	reaped := make(chan struct{})
	// A failed publish usually means the connection is gone; every further
	// publish would fail at once, so the device stops instead of spinning.
	var failed atomic.Bool
	go func() {
		defer close(reaped)
		for f := range pending {
			select {
			case <-f.tok.Done():
			case <-p.abort:
				t.fail(errors.New("no PUBACK before the drain timeout"))
				for range pending {
					t.errors++
				}
				return
			}
			if err := f.tok.Error(); err != nil {
				t.fail(fmt.Errorf("publish: %w", err))
				failed.Store(true)
			} else {
				at := p.now()
				t.ack(p.win, f.sent, at, per)
				p.acked.Add(int64(per))
			}
			free <- f.slot
		}
	}()
	gen := newGenerator(per)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for pc.wait(p.now, timer, p.stop) {
		var slot int
		select {
		case slot = <-free:
		case <-p.stop:
		}
		if isClosed(p.stop) || failed.Load() {
			break
		}
		now := p.now()
		bufs[slot] = gen.Append(bufs[slot][:0], now)
		pending <- inflight{tok: c.Publish(topic, 1, false, bufs[slot]), sent: now, slot: slot}
	}
	close(pending)
	<-reaped
	return gen.lead
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

func slicesMax(ds []time.Duration) time.Duration {
	var m time.Duration
	for _, d := range ds {
		m = max(m, d)
	}
	return m
}

// forEach runs fn for 0..n-1 with at most conc at a time and returns the
// first error; the others are cancelled through ctx.
func forEach(ctx context.Context, n, conc int, fn func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	sem := make(chan struct{}, max(conc, 1))
	var wg sync.WaitGroup
	for i := range n {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := fn(ctx, i); err != nil {
				cancel(err)
			}
		}()
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return err
	}
	return nil
}
