package node

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/tendhealth/tend/internal/alarm"
	"github.com/tendhealth/tend/internal/alarmdb"
	"github.com/tendhealth/tend/internal/alarmdb/pgalarm"
	"github.com/tendhealth/tend/internal/evaluator"
	"github.com/tendhealth/tend/internal/ingest"
	"github.com/tendhealth/tend/internal/mqtt"
	"github.com/tendhealth/tend/internal/notify"
	"github.com/tendhealth/tend/internal/store/postgres"
)

// SMTP configures e-mail notifications; an empty Addr disables them.
type SMTP struct {
	Addr     string // host:port
	From     string
	Username string
	Password string
	StartTLS bool // require STARTTLS (always, unless the server is on loopback)
}

// alarms is the analysis half: rule evaluation, alarm episodes, escalation
// timers and the notification outbox.
type alarms struct {
	db         alarm.Store
	profiles   *alarm.Profiles
	service    *alarm.Service
	dispatcher *alarm.Dispatcher
	evaluator  *evaluator.Evaluator
	cancel     context.CancelFunc
	wg         sync.WaitGroup
}

// startAlarms opens the alarm database and starts the evaluator, the
// escalation timers and the dispatcher. The MQTT server may be nil (no
// downlink). Call after the stream and the group commit are running.
func (n *Node) startAlarms(ctx context.Context) (err error) {
	cfg := n.cfg
	a := &alarms{}
	n.alarms = a
	if a.db, err = openAlarmStore(ctx, cfg); err != nil {
		return err
	}
	a.profiles = &alarm.Profiles{Store: a.db, Now: cfg.Now}
	a.dispatcher = &alarm.Dispatcher{Store: a.db, Sender: n.senders(), Resolve: a.resolveRecipient, Now: cfg.Now, Logger: cfg.Logger}
	if a.dispatcher.Metrics, err = alarm.NewDispatchMetrics(n.registry); err != nil {
		return err
	}
	a.service = alarm.NewService(alarm.Config{Store: a.db, Escalation: a.profiles.Escalation, Now: cfg.Now, Logger: cfg.Logger,
		OnChange: n.publishAlarm, Kick: a.dispatcher.Kick})
	a.dispatcher.Service = a.service
	a.evaluator = &evaluator.Evaluator{Stream: n.stream, Store: a.db, Alarms: a.service, Profiles: a.profiles, Derived: n.commit, Leased: true,
		Now: cfg.Now, Logger: cfg.Logger}
	if a.evaluator.Metrics, err = evaluator.NewMetrics(n.registry, a.evaluator); err != nil {
		return err
	}
	if err := a.evaluator.Start(ctx); err != nil {
		return fmt.Errorf("start rule evaluator: %w", err)
	}
	if err := a.dispatcher.Start(ctx); err != nil {
		return fmt.Errorf("start notification dispatcher: %w", err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	a.cancel = cancel
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		a.runTimers(runCtx, cfg)
	}()
	return nil
}

// openAlarmStore keeps alarms next to the readings: in PostgreSQL with a
// PostgreSQL store, else in their own SQLite file, so alarm transactions
// never queue behind bulk reading inserts.
func openAlarmStore(ctx context.Context, cfg Config) (alarm.Store, error) {
	if u := cfg.StoreURL; strings.HasPrefix(u, "postgres://") || strings.HasPrefix(u, "postgresql://") {
		db, err := pgalarm.Open(ctx, u, pgalarm.WithLogger(cfg.Logger))
		if err != nil {
			return nil, fmt.Errorf("open alarm tables in --store %s: %w", postgres.Redact(u), err)
		}
		return db, nil
	}
	db, err := alarmdb.Open(filepath.Join(cfg.DataDir, "alarms.db"))
	if err != nil {
		return nil, fmt.Errorf("open alarm database: %w", err)
	}
	return db, nil
}

// runTimers fires due escalations once a second. Every node may run it:
// the episode version check lets only one of two racing nodes act.
func (a *alarms) runTimers(ctx context.Context, cfg Config) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, err := a.service.Escalate(ctx); err != nil && ctx.Err() == nil {
			cfg.Logger.Error("escalation timers", "err", err)
		}
	}
}

func (a *alarms) close() error {
	if a == nil {
		return nil
	}
	if a.cancel != nil {
		a.cancel()
	}
	a.wg.Wait()
	var errs []error
	if a.evaluator != nil {
		errs = append(errs, a.evaluator.Close())
	}
	if a.dispatcher != nil {
		errs = append(errs, a.dispatcher.Close())
	}
	if a.db != nil {
		errs = append(errs, a.db.Close())
	}
	return errors.Join(errs...)
}

// senders are the notification channels this node can use.
func (n *Node) senders() notify.Mux {
	mux := notify.Mux{alarm.RecipientWebhook: &notify.Webhook{Now: n.cfg.Now}}
	if s := n.cfg.SMTP; s.Addr != "" {
		mux[alarm.RecipientEmail] = &notify.SMTP{Addr: s.Addr, From: s.From, Username: s.Username, Password: s.Password, StartTLS: s.StartTLS, Now: n.cfg.Now}
	}
	mux["mqtt"] = notify.SenderFunc(n.deliverMQTT)
	return mux
}

// deliverMQTT sends an alarm to a patient's device on its command topic;
// the device's PUBACK is the receipt.
func (n *Node) deliverMQTT(ctx context.Context, to notify.Recipient, m notify.Message) (notify.Receipt, error) {
	if n.mqtt == nil {
		return notify.Receipt{}, notify.Permanent(errors.New("the MQTT listener is off"))
	}
	err := n.mqtt.Deliver(ctx, to.Address, ingest.CommandTopic(to.Address), m.Body, "application/json")
	var refused *mqtt.RefusedError
	switch {
	case err == nil:
		return notify.Receipt{At: n.cfg.Now(), Detail: "PUBACK"}, nil
	case errors.Is(err, mqtt.ErrNoReceipt):
		return notify.Receipt{}, notify.Permanent(errors.New("the device subscribed at QoS 0 and cannot confirm receipt; subscribe at QoS 1"))
	case errors.Is(err, mqtt.ErrPacketTooLarge), errors.Is(err, mqtt.ErrInvalidMessage), errors.As(err, &refused):
		return notify.Receipt{}, notify.Permanent(err)
	}
	return notify.Receipt{}, err // not connected, not subscribed, no PUBACK yet: retried
}

// resolveRecipient turns webhook:ID, email:ADDR and device:ID into where to
// send.
func (a *alarms) resolveRecipient(ctx context.Context, r string) (notify.Recipient, error) {
	kind, addr, _ := strings.Cut(r, ":")
	switch kind {
	case alarm.RecipientWebhook:
		w, err := a.db.Webhook(ctx, addr)
		if errors.Is(err, alarm.ErrNotFound) {
			return notify.Recipient{}, notify.Permanent(fmt.Errorf("no webhook %q is registered", addr))
		}
		if err != nil {
			return notify.Recipient{}, err
		}
		return notify.Recipient{Kind: alarm.RecipientWebhook, Address: w.URL, Secret: w.Secret}, nil
	case alarm.RecipientEmail:
		return notify.Recipient{Kind: alarm.RecipientEmail, Address: addr}, nil
	case alarm.RecipientDevice:
		return notify.Recipient{Kind: "mqtt", Address: addr}, nil
	}
	return notify.Recipient{}, notify.Permanent(fmt.Errorf("unknown recipient kind %q", kind))
}
