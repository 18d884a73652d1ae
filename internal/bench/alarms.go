package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// alarmMetric is the server histogram from a reading's arrival to the
// commit of the alarm it raised.
const alarmMetric = "tend_reading_to_alarm_seconds"

// Alarm stream modes (Config.AlarmStream).
const (
	StreamAlarms = "alarms" // one stream of alarm changes only (?events=alarm), as an alarm board watches the ward
	StreamAll    = "all"    // one unfiltered stream: every reading and alarm change
	StreamProbes = "probes" // one stream per probe patient (?patient=)
)

// AlarmResult is what the alarm scenario measured on top of the load.
type AlarmResult struct {
	Patients int    // background patients (one device each)
	Probes   int    // probe patients
	Stream   string // StreamAll or StreamProbes

	RaisesSent int64 // probe raises sent inside the measured window
	RaisesSeen int64 // of those, seen as `raised` on the live stream in time
	Missed     int64 // probe raises (any phase) not seen within MissAfter
	Late       int64 // seen, but only after MissAfter
	Unexpected int64 // probe-rule raises that matched no probe reading
	Resolved   int64 // probe-rule episodes seen resolved

	SSEP50, SSEP99, SSEMax time.Duration // reading sent → `raised` event read, client clock
	AlarmP50, AlarmP99     time.Duration // tend_reading_to_alarm_seconds over the window; 0 if not exposed

	OtherAlarms  map[string]int64 // alarms raised for background patients while the probes ran, by rule (StreamAll only)
	StreamEvents int64            // events read from the live stream(s)
	StreamDrops  int64            // times the server ended a stream (it is reopened)
	DropReason   string           // why, the first time
}

// alarmScenario runs the probes and the live-stream readers of one run.
type alarmScenario struct {
	cfg    Config
	api    *apiClient
	probes []benchDevice
	book   *probeBook
	send   []func(ctx context.Context, payload []byte) error
	mqtt   *mqttLoad
	hc     *http.Client // live streams: no overall timeout

	closeOnce   sync.Once
	streamCtx   context.Context
	stopStreams context.CancelFunc
	streams     sync.WaitGroup
	events      atomic.Int64
	drops       atomic.Int64
	mu          sync.Mutex
	dropReason  string
	errCount    int64
	firstErr    error
}

func newAlarmScenario(cfg Config, api *apiClient, probes []benchDevice) *alarmScenario {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = len(probes) + 1
	return &alarmScenario{cfg: cfg, api: api, probes: probes, hc: &http.Client{Transport: tr}}
}

// connect opens the live streams first (so no raise can precede them) and
// then the probe devices' connections. The window is not known yet; the
// book is made at start.
func (s *alarmScenario) connect(ctx context.Context) error {
	s.book = newProbeBook(window{}, s.patients())
	s.streamCtx, s.stopStreams = context.WithCancel(context.WithoutCancel(ctx))
	var paths []string
	switch s.cfg.AlarmStream {
	case StreamProbes:
		for _, p := range s.probes {
			paths = append(paths, "/api/v1/stream?"+url.Values{"patient": {p.patient}}.Encode())
		}
	case StreamAll:
		paths = []string{"/api/v1/stream"}
	default:
		paths = []string{"/api/v1/stream?events=alarm"}
	}
	fmt.Fprintf(s.cfg.Out, "bench: opening %d live stream(s) (%s)\n", len(paths), s.cfg.AlarmStream)
	for _, path := range paths {
		body, err := s.openStream(ctx, path)
		if err != nil {
			s.close()
			return err
		}
		s.streams.Add(1)
		go func() {
			defer s.streams.Done()
			s.readStream(path, body)
		}()
	}
	switch s.cfg.Proto {
	case "mqtt":
		s.mqtt = &mqttLoad{cfg: s.cfg, targets: make([]mqttTarget, len(s.probes))}
		for i, d := range s.probes {
			s.mqtt.targets[i] = mqttTarget{broker: s.cfg.brokerFor(i), clientID: d.device,
				username: d.device, password: d.secret, topic: "tend/v1/devices/" + d.device + "/obs"}
		}
		if err := s.mqtt.connect(ctx); err != nil {
			s.close()
			return fmt.Errorf("probes: %w", err)
		}
		for i, c := range s.mqtt.clients {
			topic := s.mqtt.targets[i].topic
			s.send = append(s.send, func(ctx context.Context, payload []byte) error {
				tok := c.Publish(topic, 1, false, payload)
				select {
				case <-tok.Done():
					return tok.Error()
				case <-ctx.Done():
					return ctx.Err()
				}
			})
		}
	case "http":
		for _, d := range s.probes {
			u := s.cfg.HTTPURL + "/api/v1/devices/" + url.PathEscape(d.device) + "/obs"
			auth := "Bearer " + d.secret
			s.send = append(s.send, func(ctx context.Context, payload []byte) error {
				return s.postReading(ctx, u, auth, payload)
			})
		}
	}
	return nil
}

func (s *alarmScenario) patients() []string {
	ps := make([]string, len(s.probes))
	for i, d := range s.probes {
		ps[i] = d.patient
	}
	return ps
}

func (s *alarmScenario) openStream(ctx context.Context, path string) (io.ReadCloser, error) {
	req, err := http.NewRequestWithContext(s.streamCtx, http.MethodGet, s.cfg.HTTPURL+path, nil)
	if err != nil {
		return nil, fmt.Errorf("open live stream: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+s.cfg.Token)
	req.Header.Set("Accept", "text/event-stream")
	// The response headers are written after the server subscribed, so
	// once Do returns nothing published later is missed.
	type answer struct {
		resp *http.Response
		err  error
	}
	got := make(chan answer, 1)
	go func() {
		resp, err := s.hc.Do(req)
		got <- answer{resp, err}
	}()
	var a answer
	select {
	case a = <-got:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(30 * time.Second):
		return nil, errors.New("open live stream: no answer within 30s")
	}
	if a.err != nil {
		return nil, fmt.Errorf("open live stream: cannot reach %s: %w", s.cfg.HTTPURL, unwrapURLError(a.err))
	}
	if a.resp.StatusCode != http.StatusOK {
		data, _ := io.ReadAll(io.LimitReader(a.resp.Body, 4096))
		a.resp.Body.Close()
		return nil, &statusError{What: "open live stream GET /api/v1/stream", Status: a.resp.StatusCode, Detail: errorDetail(data)}
	}
	if ct := a.resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		a.resp.Body.Close()
		return nil, fmt.Errorf("open live stream: content type %q, want text/event-stream", ct)
	}
	return a.resp.Body, nil
}

// readStream reads one live stream until the scenario closes it. When the
// server ends it (a client that fell behind is cut off), it is reopened at
// once, as a real client would; raises published in between are missed and
// show up as such.
func (s *alarmScenario) readStream(path string, body io.ReadCloser) {
	for {
		reason := s.consume(body)
		body.Close()
		if s.streamCtx.Err() != nil {
			return
		}
		s.drops.Add(1)
		s.mu.Lock()
		if s.dropReason == "" {
			s.dropReason = reason
		}
		s.mu.Unlock()
		for {
			var err error
			body, err = s.openStream(s.streamCtx, path)
			if err == nil {
				break
			}
			if s.streamCtx.Err() != nil {
				return
			}
			select {
			case <-s.streamCtx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
}

// consume hands alarm events to the book until the stream ends, and says
// why it ended.
func (s *alarmScenario) consume(body io.Reader) string {
	r := newSSEReader(body)
	for {
		ev, err := r.Next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return "the server ended the stream"
			}
			return err.Error()
		}
		s.events.Add(1)
		switch ev.Type {
		case "alarm":
			c, err := parseAlarmChange(ev.Data)
			if err != nil {
				s.noteError(err)
				continue
			}
			s.book.observe(c, s.cfg.Now())
		case "error":
			return streamEndReason(ev.Data)
		}
	}
}

func (s *alarmScenario) noteError(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.errCount++
	if s.firstErr == nil {
		s.firstErr = err
	}
}

func (s *alarmScenario) postReading(ctx context.Context, u, auth string, payload []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(payload))
	if err != nil {
		return fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Content-Type", "application/senml+json")
	req.Header.Set("Authorization", auth)
	resp, err := s.api.hc.Do(req)
	if err != nil {
		return fmt.Errorf("post probe reading: %w", unwrapURLError(err))
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusAccepted {
		return &statusError{What: "post probe reading", Status: resp.StatusCode, Detail: errorDetail(data)}
	}
	return nil
}

// start runs the probes on the phases of the load; the returned function
// waits until they are done (after the window, once every raise was seen
// or given up and each probe sent a final normal reading).
func (s *alarmScenario) start(p *phases) func() {
	s.book.mu.Lock()
	s.book.win = p.win
	s.book.mu.Unlock()
	var wg sync.WaitGroup
	n := len(s.probes)
	for i := range s.probes {
		// Spread the probes over one period so their raises interleave.
		first := p.start.Add(time.Duration(i) * s.cfg.ProbeEvery / time.Duration(max(n, 1)))
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.probe(p, i, first)
		}()
	}
	return wg.Wait
}

// probe alternates a raising and a clearing blood pressure, one change
// per ProbeEvery, with at most one raise outstanding.
func (s *alarmScenario) probe(p *phases, i int, next time.Time) {
	patient, send := s.probes[i].patient, s.send[i]
	// Sends are bounded by the drain timeout like the load's acks.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-p.abort:
			cancel()
		case <-ctx.Done():
		}
	}()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	var buf []byte
	sleepUntil := func(at time.Time) bool {
		d := at.Sub(p.now())
		if d <= 0 {
			return !isClosed(p.stop)
		}
		timer.Reset(d)
		select {
		case <-timer.C:
			return true
		case <-p.stop:
			timer.Stop()
			return false
		}
	}
	raised := false
	for n := 0; sleepUntil(next); n++ {
		sys := probeLowSystolic(n)
		at := p.now()
		seen := s.book.expect(patient, float64(sys), at)
		buf = appendBP(buf[:0], sys, probeDiastolic, at)
		if err := send(ctx, buf); err != nil {
			s.book.giveUp(patient, true)
			s.noteError(fmt.Errorf("probe %d: %w", i, err))
			break
		}
		raised = true
		wait := time.NewTimer(s.cfg.MissAfter)
		select {
		case <-seen:
		case <-wait.C:
			s.book.giveUp(patient, false)
		}
		wait.Stop()
		next = maxTime(next.Add(s.cfg.ProbeEvery), p.now())
		if !sleepUntil(next) {
			break
		}
		buf = appendBP(buf[:0], probeNormalSys, probeNormalDias, p.now())
		if err := send(ctx, buf); err != nil {
			s.noteError(fmt.Errorf("probe %d: %w", i, err))
			break
		}
		raised = false
		next = maxTime(next.Add(s.cfg.ProbeEvery), p.now())
	}
	if raised {
		// Leave the probe patient without an open alarm.
		buf = appendBP(buf[:0], probeNormalSys, probeNormalDias, maxTime(p.now(), next))
		if err := send(ctx, buf); err != nil {
			s.noteError(fmt.Errorf("probe %d: final normal reading: %w", i, err))
		}
	}
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// close ends the live streams and the probe connections.
func (s *alarmScenario) close() {
	s.closeOnce.Do(func() {
		if s.stopStreams != nil {
			s.stopStreams()
		}
		s.streams.Wait()
		if s.mqtt != nil {
			s.mqtt.disconnect()
		}
		s.hc.CloseIdleConnections()
	})
}

// result summarises the scenario; serverBefore/After are /metrics scrapes
// around the window.
func (s *alarmScenario) result(patients int, before, after []byte) (AlarmResult, error) {
	b := s.book.summary()
	r := AlarmResult{Patients: patients, Probes: len(s.probes), Stream: s.cfg.AlarmStream,
		RaisesSent: b.sent, RaisesSeen: b.seen, Missed: b.missed, Late: b.late, Unexpected: b.unexpected, Resolved: b.resolved,
		SSEP50: b.p50, SSEP99: b.p99, SSEMax: b.max, OtherAlarms: b.others,
		StreamEvents: s.events.Load(), StreamDrops: s.drops.Load()}
	s.mu.Lock()
	r.DropReason = s.dropReason
	sendErrs, firstErr := s.errCount, s.firstErr
	s.mu.Unlock()
	var err error
	if before != nil && after != nil {
		r.AlarmP50, r.AlarmP99, err = histogramQuantiles(before, after, alarmMetric)
	}
	if sendErrs > 0 {
		err = errors.Join(err, fmt.Errorf("%d probe or live-stream errors, first: %w", sendErrs, firstErr))
	}
	return r, err
}

// OtherAlarmsText lists alarms raised for background patients, e.g.
// "news2 3, spo2-low 1"; "" when none.
func OtherAlarmsText(m map[string]int64) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}
