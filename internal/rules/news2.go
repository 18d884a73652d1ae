package rules

import (
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/tendhealth/tend/internal/codes"
	"github.com/tendhealth/tend/internal/news2"
	"github.com/tendhealth/tend/internal/reading"
)

// NEWS2Device is the device id of derived NEWS2 score readings.
const NEWS2Device = "tend-news2"

// scoreRepeat is how often an unchanged complete NEWS2 score is stored again,
// so a chart shows it is still current.
const scoreRepeat = 15 * time.Minute

func isNEWS2Input(code string) bool {
	switch code {
	case codes.RespiratoryRate, codes.OxygenSaturation, codes.InhaledO2Flow, codes.SystolicBP,
		codes.HeartRate, codes.PulseRate, codes.ACVPU, codes.BodyTemperature:
		return true
	}
	return false
}

// NEWS2Input builds the NEWS2 input from the latest value per code (for
// the engine and for an on-demand score from stored readings).
func NEWS2Input(latest func(code string) (v float64, at time.Time, ok bool)) news2.Input {
	var in news2.Input
	val := func(code string) news2.Value {
		v, at, ok := latest(code)
		return news2.Value{V: v, At: at, OK: ok}
	}
	in.RespRate = val(codes.RespiratoryRate)
	in.SpO2 = val(codes.OxygenSaturation)
	in.SystolicBP = val(codes.SystolicBP)
	in.TempC = val(codes.BodyTemperature)
	// Pulse: whichever of ECG heart rate and pulse rate is newer.
	hr, pr := val(codes.HeartRate), val(codes.PulseRate)
	in.Pulse = hr
	if pr.OK && (!hr.OK || pr.At.After(hr.At)) {
		in.Pulse = pr
	}
	if o2 := val(codes.InhaledO2Flow); o2.OK {
		in.OnOxygen = news2.BoolValue{V: o2.V > 0, At: o2.At, OK: true}
	}
	// Tend's ACVPU code is 0 (A) … 4 (U); news2.Level starts at Alert = 1.
	if c := val(codes.ACVPU); c.OK && c.V >= 0 && c.V <= 4 && c.V == math.Trunc(c.V) {
		in.Consciousness = news2.LevelValue{V: news2.Alert + news2.Level(int(c.V)), At: c.At, OK: true}
	}
	return in
}

// BandPriority maps the RCP clinical response bands to alarm priorities:
// 7+ high (emergency response), 5–6 medium (urgent), a single parameter
// scoring 3 low (urgent ward-based review); lower scores raise nothing.
func BandPriority(b news2.Band) Priority {
	switch b {
	case news2.BandHigh:
		return PriorityHigh
	case news2.BandMedium:
		return PriorityMedium
	case news2.BandLowMedium:
		return PriorityLow
	}
	return ""
}

func (e *Engine) news2(p *patientState, rule Rule, r reading.Reading, seq uint64, out *Output) {
	in := NEWS2Input(func(code string) (float64, time.Time, bool) {
		s := p.Signals[code]
		if s == nil {
			return 0, time.Time{}, false
		}
		return s.Last.V, s.Last.T, true
	})
	cfg := news2.Config{Scale: news2.Scale1, Fresh: news2.DefaultFreshness()}
	if rule.Scale == 2 {
		cfg.Scale = news2.Scale2
	}
	res := news2.Score(in, cfg, r.Time)
	if res.Complete && (p.LastScore == nil || p.LastScore.Total != res.Total || r.Time.Sub(p.LastScore.At) >= scoreRepeat) && r.Time.After(lastAt(p.LastScore)) {
		p.LastScore = &scoreMark{Total: res.Total, At: r.Time}
		out.Derived = append(out.Derived, reading.Reading{Patient: p.id, Device: NEWS2Device, Code: codes.NEWS2Score, Value: float64(res.Total), HasValue: true,
			Unit: "{score}", Time: r.Time, Received: r.Received, Source: "rules"})
	}
	prio := BandPriority(res.Band)
	ev := Event{Device: r.Device, Code: codes.NEWS2Score, Value: float64(res.Total), Time: r.Time, Seq: seq, Received: r.Received, Priority: prio, Detail: res}
	c := p.Conds[rule.ID+"|"]
	firing := c != nil && c.Firing
	// The message is built only when something is emitted: this runs on
	// every vital-sign reading.
	switch {
	case prio == "" && firing:
		ev.Message = news2Message(rule, res)
		e.transition(p, rule, "", false, ev, out)
	case prio == "":
	case !firing:
		ev.Message = news2Message(rule, res)
		e.transition(p, rule, "", true, ev, out)
	case c.Priority != prio:
		c.Priority = prio
		ev.Message = news2Message(rule, res)
		e.emit(rule, "", Update, withPatient(ev, p.id), out)
	}
}

func withPatient(ev Event, id string) Event { ev.Patient = id; return ev }

func lastAt(m *scoreMark) time.Time {
	if m == nil {
		return time.Time{}
	}
	return m.At
}

func news2Message(rule Rule, res news2.Result) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %d (%s)", rule.label(), res.Total, res.Band)
	if !res.Complete {
		var miss []string
		for _, p := range res.Missing.Params() {
			miss = append(miss, p.String())
		}
		for _, p := range res.Stale.Params() {
			miss = append(miss, p.String()+" (stale)")
		}
		fmt.Fprintf(&b, "; not scored: %s, so the score is a lower bound", strings.Join(miss, ", "))
	}
	return b.String()
}
