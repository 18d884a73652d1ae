package news2

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Param identifies one of the seven NEWS2 parameters.
type Param int

// The NEWS2 parameters, in chart order.
const (
	RespirationRate Param = iota
	SpO2
	SupplementalOxygen
	SystolicBP
	Pulse
	Consciousness
	Temperature

	// NumParams is the number of NEWS2 parameters.
	NumParams = 7
)

var paramNames = [NumParams]string{
	RespirationRate:    "respiration_rate",
	SpO2:               "spo2",
	SupplementalOxygen: "supplemental_oxygen",
	SystolicBP:         "systolic_bp",
	Pulse:              "pulse",
	Consciousness:      "consciousness",
	Temperature:        "temperature",
}

// String returns the stable lowercase name used in JSON, e.g. "spo2".
func (p Param) String() string {
	if p < 0 || p >= NumParams {
		return fmt.Sprintf("param(%d)", int(p))
	}
	return paramNames[p]
}

// MarshalText encodes the parameter as its stable name.
func (p Param) MarshalText() ([]byte, error) {
	if p < 0 || p >= NumParams {
		return nil, fmt.Errorf("news2: marshal unknown parameter %d", int(p))
	}
	return []byte(paramNames[p]), nil
}

// UnmarshalText decodes a stable parameter name.
func (p *Param) UnmarshalText(text []byte) error {
	for i, name := range paramNames {
		if string(text) == name {
			*p = Param(i)
			return nil
		}
	}
	return fmt.Errorf("news2: unknown parameter %q", text)
}

// Scale selects the SpO2 scoring scale.
type Scale int

const (
	// Scale1 is the default SpO2 scale.
	Scale1 Scale = iota
	// Scale2 is for patients with confirmed hypercapnic respiratory failure
	// and a prescribed target saturation of 88-92%, on a clinician's decision.
	Scale2
)

// String returns "scale1" or "scale2".
func (s Scale) String() string {
	switch s {
	case Scale1:
		return "scale1"
	case Scale2:
		return "scale2"
	}
	return fmt.Sprintf("scale(%d)", int(s))
}

// Level is a level of consciousness on the ACVPU scale.
type Level int

// ACVPU levels. The zero value is deliberately not a level, so an
// uninitialised field cannot read as "alert".
const (
	Alert        Level = iota + 1 // A
	NewConfusion                  // C: new-onset confusion, disorientation or agitation
	Voice                         // V: responds to voice
	Pain                          // P: responds to pain
	Unresponsive                  // U
)

// String returns the ACVPU letter.
func (l Level) String() string {
	if l >= Alert && l <= Unresponsive {
		return "ACVPU"[l-1 : l]
	}
	return fmt.Sprintf("level(%d)", int(l))
}

// ParseLevel reads an ACVPU letter (case-insensitive).
func ParseLevel(s string) (Level, error) {
	if len(s) == 1 {
		if i := strings.IndexByte("ACVPU", s[0]&^0x20); i >= 0 {
			return Level(i + 1), nil
		}
	}
	return 0, fmt.Errorf("news2: %q is not an ACVPU level (A, C, V, P or U)", s)
}

// Band is the RCP clinical response band for an aggregate score.
type Band int

// Clinical response bands, from least to most urgent.
const (
	BandNone      Band = iota // aggregate 0
	BandLow                   // aggregate 1-4
	BandLowMedium             // a 3 in one parameter, aggregate < 5: urgent ward-based response
	BandMedium                // aggregate 5-6: key threshold for urgent response
	BandHigh                  // aggregate 7 or more: emergency response
)

var bandNames = [...]string{
	BandNone:      "none",
	BandLow:       "low",
	BandLowMedium: "low-medium",
	BandMedium:    "medium",
	BandHigh:      "high",
}

// String returns the stable lowercase name used in JSON, e.g. "low-medium".
func (b Band) String() string {
	if b < 0 || int(b) >= len(bandNames) {
		return fmt.Sprintf("band(%d)", int(b))
	}
	return bandNames[b]
}

// MarshalText encodes the band as its stable name.
func (b Band) MarshalText() ([]byte, error) {
	if b < 0 || int(b) >= len(bandNames) {
		return nil, fmt.Errorf("news2: marshal unknown band %d", int(b))
	}
	return []byte(bandNames[b]), nil
}

// BandFor maps an aggregate score and the "any single parameter scored 3"
// flag to the RCP clinical response band.
func BandFor(total int, anySingle3 bool) Band {
	switch {
	case total >= 7:
		return BandHigh
	case total >= 5:
		return BandMedium
	case anySingle3:
		return BandLowMedium
	case total >= 1:
		return BandLow
	}
	return BandNone
}

// ParamSet is a set of parameters. It is a bit set so that Score need not
// allocate; it encodes to JSON as a list of parameter names.
type ParamSet uint8

// Has reports whether p is in the set.
func (s ParamSet) Has(p Param) bool { return p >= 0 && p < NumParams && s&(1<<p) != 0 }

// Len returns the number of parameters in the set.
func (s ParamSet) Len() int {
	n := 0
	for p := Param(0); p < NumParams; p++ {
		if s.Has(p) {
			n++
		}
	}
	return n
}

// Params returns the members in chart order.
func (s ParamSet) Params() []Param {
	out := make([]Param, 0, s.Len())
	for p := Param(0); p < NumParams; p++ {
		if s.Has(p) {
			out = append(out, p)
		}
	}
	return out
}

// String lists the member names, e.g. "[spo2 pulse]".
func (s ParamSet) String() string { return fmt.Sprint(s.Params()) }

// MarshalJSON encodes the set as a JSON array of names (never null).
func (s ParamSet) MarshalJSON() ([]byte, error) {
	b := []byte{'['}
	for i, p := range s.Params() {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = append(b, paramNames[p]...)
		b = append(b, '"')
	}
	return append(b, ']'), nil
}

func (s *ParamSet) add(p Param) { *s |= 1 << p }

// Value is one numeric observation.
type Value struct {
	V  float64
	At time.Time // observation time
	OK bool      // false: no observation
}

// BoolValue is one yes/no observation.
type BoolValue struct {
	V  bool
	At time.Time
	OK bool
}

// LevelValue is one ACVPU observation.
type LevelValue struct {
	V  Level
	At time.Time
	OK bool
}

// Input holds the latest observation of each parameter.
type Input struct {
	RespRate      Value      // breaths per minute
	SpO2          Value      // percent
	OnOxygen      BoolValue  // true: any supplemental oxygen
	SystolicBP    Value      // mmHg
	Pulse         Value      // beats per minute
	Consciousness LevelValue // ACVPU
	TempC         Value      // degrees Celsius
}

// Config controls scoring.
type Config struct {
	Scale Scale
	// Fresh is the maximum age of an observation per parameter. A parameter
	// absent from the map (or a nil map) uses DefaultFreshness.
	Fresh map[Param]time.Duration
}

// defaultFresh is why each window is what it is: continuously monitored
// vitals (RR, SpO2, pulse) arrive every few seconds to minutes, so an
// observation older than 15 min means the sensor is off or disconnected;
// BP and temperature are usually spot or cycled measurements (a monitor
// cycling the cuff every 15-60 min), so 1 h; consciousness and the oxygen
// flag are charted by staff at routine observation rounds and change rarely,
// so 4 h, the shortest routine NEWS2 observation interval for a low score.
var defaultFresh = [NumParams]time.Duration{
	RespirationRate:    15 * time.Minute,
	SpO2:               15 * time.Minute,
	SupplementalOxygen: 4 * time.Hour,
	SystolicBP:         time.Hour,
	Pulse:              15 * time.Minute,
	Consciousness:      4 * time.Hour,
	Temperature:        time.Hour,
}

// DefaultFreshness returns the default maximum observation age per
// parameter: 15 min for continuously monitored RR, SpO2 and pulse; 1 h for
// systolic BP and temperature; 4 h for consciousness and the oxygen flag,
// which are charted at observation rounds.
func DefaultFreshness() map[Param]time.Duration {
	m := make(map[Param]time.Duration, NumParams)
	for p, d := range defaultFresh {
		m[Param(p)] = d
	}
	return m
}

func (c Config) window(p Param) time.Duration {
	if d, ok := c.Fresh[p]; ok {
		return d
	}
	return defaultFresh[p]
}

// Parts holds the points of each parameter, indexed by Param. It encodes to
// JSON as an object keyed by parameter name.
type Parts [NumParams]int

// MarshalJSON encodes the parts as {"respiration_rate": 0, ...} in chart order.
func (ps Parts) MarshalJSON() ([]byte, error) {
	b := []byte{'{'}
	for p, pts := range ps {
		if p > 0 {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = append(b, paramNames[p]...)
		b = append(b, '"', ':')
		b = strconv.AppendInt(b, int64(pts), 10)
	}
	return append(b, '}'), nil
}

// Result is a NEWS2 score with what it was and was not based on.
type Result struct {
	Total      int      `json:"total"`
	Parts      Parts    `json:"parts"` // 0 when not scored
	Band       Band     `json:"band"`
	AnySingle3 bool     `json:"any_single_3"`
	Scored     ParamSet `json:"scored"`
	Missing    ParamSet `json:"missing"`  // no observation, or an invalid one
	Stale      ParamSet `json:"stale"`    // observation older than its freshness window
	Complete   bool     `json:"complete"` // all seven scored; otherwise Total is a lower bound
}

// Score computes NEWS2 at time now. An observation is fresh when
// now - At <= its window (exactly at the window edge is fresh); observations
// time-stamped after now are taken as fresh. With an unknown cfg.Scale,
// SpO2 cannot be scored and is reported as missing.
func Score(in Input, cfg Config, now time.Time) Result {
	var r Result

	// present reports whether parameter p may be scored, recording why not.
	present := func(p Param, ok bool, at time.Time) bool {
		switch {
		case !ok:
			r.Missing.add(p)
			return false
		case now.Sub(at) > cfg.window(p):
			r.Stale.add(p)
			return false
		}
		return true
	}
	score := func(p Param, v float64, onOxygen bool) {
		pts, ok := ScoreParam(p, v, cfg.Scale, onOxygen)
		if !ok {
			r.Missing.add(p)
			return
		}
		r.Parts[p] = pts
		r.Scored.add(p)
	}

	onOxygen := false
	if present(SupplementalOxygen, in.OnOxygen.OK, in.OnOxygen.At) {
		onOxygen = in.OnOxygen.V
		score(SupplementalOxygen, boolToFloat(onOxygen), false)
	}
	numeric := [...]struct {
		p Param
		v Value
	}{
		{RespirationRate, in.RespRate},
		{SpO2, in.SpO2},
		{SystolicBP, in.SystolicBP},
		{Pulse, in.Pulse},
		{Temperature, in.TempC},
	}
	for _, n := range numeric {
		if present(n.p, n.v.OK, n.v.At) {
			score(n.p, n.v.V, onOxygen)
		}
	}
	if present(Consciousness, in.Consciousness.OK, in.Consciousness.At) {
		score(Consciousness, float64(in.Consciousness.V), false)
	}

	for _, pts := range r.Parts {
		r.Total += pts
		if pts == 3 {
			r.AnySingle3 = true
		}
	}
	r.Band = BandFor(r.Total, r.AnySingle3)
	r.Complete = r.Scored.Len() == NumParams
	return r
}

func boolToFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// ScoreParam scores one parameter value. For SupplementalOxygen, v != 0
// means oxygen; for Consciousness, v is float64(Level). onOxygen only
// matters for SpO2 on Scale2. ok is false when v cannot be scored (not
// finite, an unknown ACVPU level, or an unknown parameter or scale).
// Values are rounded as the package doc describes before banding.
func ScoreParam(p Param, v float64, scale Scale, onOxygen bool) (points int, ok bool) {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, false
	}
	switch p {
	case RespirationRate:
		return band(math.Round(v), 8, 3, 11, 1, 20, 0, 24, 2, 3), true
	case SpO2:
		return scoreSpO2(math.Round(v), scale, onOxygen)
	case SupplementalOxygen:
		if v != 0 {
			return 2, true
		}
		return 0, true
	case SystolicBP:
		return band(math.Round(v), 90, 3, 100, 2, 110, 1, 219, 0, 3), true
	case Pulse:
		return scorePulse(math.Round(v)), true
	case Consciousness:
		if v != math.Trunc(v) || v < float64(Alert) || v > float64(Unresponsive) {
			return 0, false
		}
		if Level(v) == Alert {
			return 0, true
		}
		return 3, true
	case Temperature:
		// Banded in tenths of a degree so the comparison is exact.
		return band(math.Round(v*10), 350, 3, 360, 1, 380, 0, 390, 1, 2), true
	}
	return 0, false
}

// band scores x against four ascending inclusive upper bounds, each with its
// points, and the points above the last bound.
func band(x, b1 float64, p1 int, b2 float64, p2 int, b3 float64, p3 int, b4 float64, p4, above int) int {
	switch {
	case x <= b1:
		return p1
	case x <= b2:
		return p2
	case x <= b3:
		return p3
	case x <= b4:
		return p4
	}
	return above
}

func scorePulse(x float64) int {
	switch {
	case x <= 40:
		return 3
	case x <= 50:
		return 1
	case x <= 90:
		return 0
	case x <= 110:
		return 1
	case x <= 130:
		return 2
	}
	return 3
}

func scoreSpO2(x float64, scale Scale, onOxygen bool) (int, bool) {
	switch scale {
	case Scale1:
		switch {
		case x <= 91:
			return 3, true
		case x <= 93:
			return 2, true
		case x <= 95:
			return 1, true
		}
		return 0, true
	case Scale2:
		switch {
		case x <= 83:
			return 3, true
		case x <= 85:
			return 2, true
		case x <= 87:
			return 1, true
		case x <= 92 || !onOxygen:
			return 0, true
		case x <= 94:
			return 1, true
		case x <= 96:
			return 2, true
		}
		return 3, true
	}
	return 0, false
}
