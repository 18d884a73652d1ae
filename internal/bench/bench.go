// Package bench is Tend's load generator. It drives a running Tend only
// through the external contract (FHIR and device API over HTTP, device
// ingest over MQTT or HTTP), the way a fleet of real devices would, and
// measures what a device sees: how many readings per second are
// acknowledged, how long an acknowledgement takes, and whether every
// acknowledged reading was in fact stored. Optionally it repeats the same
// MQTT load against a plain broker as a relay baseline.
package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"
)

// ErrLost is returned (wrapped, together with a filled Result) when readings
// that were acknowledged did not show up in the store in time.
var ErrLost = errors.New("acknowledged readings were lost")

// ErrMissedAlarms is returned (wrapped, together with a filled Result) when
// a probe's alarm was not seen on the live stream in time.
var ErrMissedAlarms = errors.New("alarms were missed on the live stream")

// Config says what load to generate and where.
type Config struct {
	HTTPURL  string // Tend HTTP base, e.g. http://127.0.0.1:8080
	MQTTAddr string // Tend MQTT listener, host:port or tcp://host:port; a comma-separated list spreads devices over several nodes
	Token    string // admin bearer token

	Proto              string        // "mqtt" (default) or "http"
	Devices            int           // simulated devices, each with its own connection (default 50)
	ReadingsPerMessage int           // SenML records per message (default 10)
	InflightPerDevice  int           // unacknowledged messages allowed per device (default 32)
	Rate               float64       // total paced load in readings/s; 0 = as fast as acks allow
	Duration           time.Duration // measured window (default 60s)
	Warmup             time.Duration // load before the measured window, not counted

	Baseline     string // plain MQTT broker host:port for a relay baseline; "" = none
	BaselineOnly bool   // run only the baseline (no Tend needed)

	// Alarm scenario: Devices background patients send the generator's
	// normal vitals while Probes extra patients alternately raise and clear
	// the ward rule sbp-low, and a live-stream client times each raise.
	Alarms      bool
	Probes      int           // probe patients (default 20)
	ProbeEvery  time.Duration // between a probe's raise and clear and the next raise (default 1s)
	MissAfter   time.Duration // a raise not seen on the live stream by then is missed (default 10s)
	AlarmStream string        // StreamAlarms (default), StreamAll or StreamProbes

	StoreTimeout     time.Duration // how long to wait for stored == acked (default 60s)
	SetupConcurrency int           // parallel setup requests (default 8; 64 with Alarms)
	RunID            string        // names identifiers and topics; default random

	Out io.Writer // progress lines; nil = discard
	// Now stamps sends, acks and reading times; nil = time.Now. The phases
	// themselves run on real timers, so it must advance with real time.
	Now func() time.Time
}

// Result is what one run measured.
type Result struct {
	Proto      string
	Devices    int
	PerMessage int
	Duration   time.Duration // measured window

	Acked      int64   // readings acknowledged inside the measured window
	AckedTotal int64   // readings acknowledged over the whole run (warmup and drain too)
	Stored     int64   // readings the server reports stored for the bench patients
	Lost       int64   // acknowledged but not stored when the wait timed out
	Rate       float64 // Acked / Duration, readings/s

	AckP50, AckP99, AckMax time.Duration // per message, sent in the window
	StoredP50, StoredP99   time.Duration // from tend_publish_to_stored_seconds; 0 if not exposed
	TimeLead               time.Duration // how far reading times ran ahead of the clock
	Baseline               *BaselineResult
	Alarm                  *AlarmResult // the alarm scenario's figures; nil without Alarms
	Errors                 int64        // failed or unacknowledged messages, refused requests, lost connections
	FirstError             string
}

// BaselineResult is the same MQTT load against a plain broker.
type BaselineResult struct {
	Addr                   string
	Acked                  int64
	Rate                   float64
	AckP50, AckP99, AckMax time.Duration
	Errors                 int64
	Ratio                  float64 // Tend rate / baseline rate; 0 when unknown
}

// Run sets up devices, generates the load, waits for the server to store
// everything it acknowledged and returns the measurements. When readings are
// lost it returns the Result together with an error wrapping ErrLost.
func Run(ctx context.Context, cfg Config) (Result, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return Result{}, err
	}
	if cfg.BaselineOnly {
		b, err := runBaseline(ctx, cfg)
		if err != nil {
			return Result{}, err
		}
		return Result{
			Proto: "baseline", Devices: cfg.Devices, PerMessage: cfg.ReadingsPerMessage,
			Duration: cfg.Duration, Acked: b.Acked, AckedTotal: b.Acked, Rate: b.Rate,
			AckP50: b.AckP50, AckP99: b.AckP99, AckMax: b.AckMax, Errors: b.Errors,
		}, nil
	}
	res, err := runTend(ctx, cfg)
	if err != nil && !errors.Is(err, ErrLost) {
		return res, err
	}
	if cfg.Baseline != "" {
		b, berr := runBaseline(ctx, cfg)
		if berr != nil {
			return res, errors.Join(err, berr)
		}
		if b.Rate > 0 {
			b.Ratio = res.Rate / b.Rate
		}
		res.Baseline = &b
	}
	return res, err
}

func (c Config) withDefaults() (Config, error) {
	if c.Proto == "" {
		c.Proto = "mqtt"
	}
	if c.Devices == 0 {
		c.Devices = 50
	}
	if c.ReadingsPerMessage == 0 {
		c.ReadingsPerMessage = 10
	}
	if c.InflightPerDevice == 0 {
		c.InflightPerDevice = 32
	}
	if c.Duration == 0 {
		c.Duration = 60 * time.Second
	}
	if c.StoreTimeout == 0 {
		c.StoreTimeout = 60 * time.Second
	}
	if c.SetupConcurrency == 0 {
		c.SetupConcurrency = 8
		if c.Alarms {
			// Thousands of patients: setup is three requests each.
			c.SetupConcurrency = 64
		}
	}
	if c.Probes == 0 {
		c.Probes = 20
	}
	if c.ProbeEvery == 0 {
		c.ProbeEvery = time.Second
	}
	if c.MissAfter == 0 {
		c.MissAfter = 10 * time.Second
	}
	if c.AlarmStream == "" {
		c.AlarmStream = StreamAlarms
	}
	if c.Out == nil {
		c.Out = io.Discard
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.RunID == "" {
		var b [4]byte
		if _, err := rand.Read(b[:]); err != nil {
			return c, fmt.Errorf("bench: make run id: %w", err)
		}
		c.RunID = hex.EncodeToString(b[:])
	}
	switch {
	case c.Proto != "mqtt" && c.Proto != "http":
		return c, fmt.Errorf("bench: protocol %q is not supported; use mqtt or http", c.Proto)
	case c.Devices < 0 || c.ReadingsPerMessage < 0 || c.InflightPerDevice < 0 || c.SetupConcurrency < 0:
		return c, errors.New("bench: devices, readings per message, in-flight window and setup concurrency must be positive")
	case c.ReadingsPerMessage > 10000:
		return c, errors.New("bench: at most 10000 readings per message")
	case c.Rate < 0 || c.Duration < 0 || c.Warmup < 0 || c.StoreTimeout < 0:
		return c, errors.New("bench: rate and durations must not be negative")
	case c.BaselineOnly && c.Baseline == "":
		return c, errors.New("bench: baseline-only needs a baseline broker address")
	case !c.BaselineOnly && c.HTTPURL == "":
		return c, errors.New("bench: the Tend HTTP URL is required")
	case !c.BaselineOnly && c.Proto == "mqtt" && c.MQTTAddr == "":
		return c, errors.New("bench: the Tend MQTT address is required for --proto mqtt")
	case c.Alarms && (c.Probes < 0 || c.ProbeEvery < 0 || c.MissAfter < 0):
		return c, errors.New("bench: probes, probe period and miss timeout must not be negative")
	case c.Alarms && c.AlarmStream != StreamAlarms && c.AlarmStream != StreamAll && c.AlarmStream != StreamProbes:
		return c, fmt.Errorf("bench: alarm stream %q is not supported; use %s, %s or %s", c.AlarmStream, StreamAlarms, StreamAll, StreamProbes)
	case c.Alarms && (c.BaselineOnly || c.Baseline != ""):
		return c, errors.New("bench: the alarm scenario has no baseline")
	case strings.ContainsAny(c.RunID, "/#+ "):
		return c, errors.New("bench: run id must not contain '/', '#', '+' or spaces")
	}
	if !c.BaselineOnly {
		u, err := url.Parse(c.HTTPURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return c, fmt.Errorf("bench: HTTP URL %q is not an http(s) URL", c.HTTPURL)
		}
		c.HTTPURL = strings.TrimRight(c.HTTPURL, "/")
	}
	return c, nil
}

// brokerFor is the broker of the i-th device: MQTTAddr may list several
// nodes (comma-separated), over which devices are spread in turn.
func (c Config) brokerFor(i int) string {
	addrs := strings.Split(c.MQTTAddr, ",")
	return brokerURL(strings.TrimSpace(addrs[i%len(addrs)]))
}

// brokerURL turns host:port into the form paho wants.
func brokerURL(addr string) string {
	if strings.Contains(addr, "://") {
		return addr
	}
	return "tcp://" + addr
}
