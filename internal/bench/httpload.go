package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"
	"time"
)

// httpLoad posts readings to /api/v1/devices/{id}/obs; each device runs
// InflightPerDevice long-lived workers over kept-alive connections, so a
// device has that many requests in flight, like the MQTT window.
type httpLoad struct {
	cfg  Config
	devs []benchDevice
	hc   *http.Client
}

func newHTTPLoad(cfg Config, devs []benchDevice) *httpLoad {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	conns := len(devs) * cfg.InflightPerDevice
	tr.MaxIdleConns = conns
	tr.MaxIdleConnsPerHost = conns
	return &httpLoad{cfg: cfg, devs: devs, hc: &http.Client{Transport: tr, Timeout: drainTimeout}}
}

// run returns one tally per device and how far reading times ran ahead.
func (h *httpLoad) run(ctx context.Context, p *phases) ([]*tally, time.Duration) {
	defer h.hc.CloseIdleConnections()
	// Requests still running when the drain time is up are cancelled.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-p.abort:
			cancel()
		case <-ctx.Done():
		}
	}()
	per := h.cfg.ReadingsPerMessage
	var msgRate float64
	if h.cfg.Rate > 0 {
		msgRate = h.cfg.Rate / float64(per) / float64(len(h.devs))
	}
	tallies := make([]*tally, len(h.devs))
	leads := make([]time.Duration, len(h.devs))
	var wg sync.WaitGroup
	for i, d := range h.devs {
		start := p.start
		if msgRate > 0 {
			start = start.Add(time.Duration(float64(i) / float64(len(h.devs)) / msgRate * float64(time.Second)))
		}
		dev := &httpDevice{
			url:    h.cfg.HTTPURL + "/api/v1/devices/" + url.PathEscape(d.device) + "/obs",
			auth:   "Bearer " + d.secret,
			gen:    newGenerator(per),
			pacer:  newPacer(msgRate, start),
			worker: make([]*tally, h.cfg.InflightPerDevice),
		}
		var dwg sync.WaitGroup
		for w := range dev.worker {
			dev.worker[w] = &tally{}
			dwg.Add(1)
			go func() {
				defer dwg.Done()
				h.worker(ctx, p, dev, dev.worker[w])
			}()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			dwg.Wait()
			merged := &tally{}
			for _, t := range dev.worker {
				merged.latencies = append(merged.latencies, t.latencies...)
				merged.ackedInWindow += t.ackedInWindow
				merged.ackedTotal += t.ackedTotal
				merged.errors += t.errors
				if merged.firstErr == nil {
					merged.firstErr = t.firstErr
				}
			}
			tallies[i] = merged
			leads[i] = dev.gen.lead
		}()
	}
	wg.Wait()
	return tallies, slicesMax(leads)
}

type httpDevice struct {
	url, auth string
	mu        sync.Mutex // guards gen: workers of a device share its reading times
	gen       *generator
	pacer     *pacer
	worker    []*tally
}

func (h *httpLoad) worker(ctx context.Context, p *phases, d *httpDevice, t *tally) {
	per := h.cfg.ReadingsPerMessage
	// The payload buffer is reused after a 202, which the server sends only
	// after reading the whole body. After any other outcome the transport
	// may still be writing it, so a fresh one is taken. The reader is new
	// per request because the transport reads it once more for EOF, maybe
	// after the response arrived.
	var buf []byte
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for d.pacer.wait(p.now, timer, p.stop) {
		now := p.now()
		d.mu.Lock()
		buf = d.gen.Append(buf[:0], now)
		d.mu.Unlock()
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.url, bytes.NewReader(buf))
		if err != nil {
			t.fail(fmt.Errorf("build request: %w", err))
			return
		}
		req.Header.Set("Content-Type", "application/senml+json")
		req.Header.Set("Authorization", d.auth)
		sent := p.now()
		resp, err := h.hc.Do(req)
		if err != nil {
			t.fail(fmt.Errorf("post readings: %w", unwrapURLError(err)))
			buf = nil
			if errors.Is(err, context.Canceled) {
				return
			}
			pauseAfterError(p.stop)
			continue
		}
		var detail []byte
		if resp.StatusCode != http.StatusAccepted {
			detail, _ = io.ReadAll(io.LimitReader(resp.Body, 4096))
		}
		// Drain so the connection is reused.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			t.fail(&statusError{What: "post readings", Status: resp.StatusCode, Detail: errorDetail(detail)})
			buf = nil
			pauseAfterError(p.stop)
			continue
		}
		at := p.now()
		t.ack(p.win, sent, at, per)
		p.acked.Add(int64(per))
	}
}

// pauseAfterError keeps a failing worker from spinning at full speed against
// a server that refuses everything.
func pauseAfterError(stop <-chan struct{}) {
	select {
	case <-time.After(100 * time.Millisecond):
	case <-stop:
	}
}
