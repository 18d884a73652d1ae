// Package senml decodes SenML packs (RFC 8428) in JSON and CBOR into
// measurements with Tend codes and canonical units.
//
// Decoding is in three steps: the wire format is read into raw records
// (json.go, cbor.go), base fields are resolved per RFC 8428 §4.6, and each
// resolved record is normalised: its name is looked up in package codes, its
// value converted to the canonical unit and range-checked, and blood pressure
// components are merged into one panel. A payload is accepted whole or not at
// all: partial acceptance would leave the sender unable to tell which
// readings were taken.
package senml

import (
	"fmt"
	"math"
	"mime"
	"strconv"
	"strings"
	"time"

	"github.com/tendhealth/tend/internal/codes"
	"github.com/tendhealth/tend/internal/reading"
)

// Content types Decode understands.
const (
	ContentTypeJSON = "application/senml+json"
	ContentTypeCBOR = "application/senml+cbor"
)

// Limits bound what one payload may carry.
type Limits struct {
	MaxBytes   int           // payload size
	MaxRecords int           // SenML records in one pack
	MaxFuture  time.Duration // how far ahead of now a reading time may be
	MaxPast    time.Duration // how far behind now a reading time may be
}

// DefaultLimits suit devices and gateways that batch readings.
var DefaultLimits = Limits{
	// 256 KiB holds thousands of records yet bounds memory per request.
	MaxBytes: 256 << 10,
	// 4096 records is hours of 1 Hz vitals from one gateway flush.
	MaxRecords: 4096,
	// Device clocks drift; beyond a few minutes ahead the clock is wrong and
	// the time would sort the reading after real future ones.
	MaxFuture: 5 * time.Minute,
	// A store-and-forward device may upload a year of backlog; older data
	// points to a reset clock (1970) rather than a real reading.
	MaxPast: 366 * 24 * time.Hour,
}

// Measurement is one normalised reading, not yet attributed to a patient.
type Measurement struct {
	Code       string // LOINC code
	MDC        string // MDC reference id, "" when none
	Value      float64
	HasValue   bool
	Components []reading.Component // panels only (blood pressure)
	Unit       string              // canonical UCUM unit
	Time       time.Time
}

// Error explains why a payload was rejected. Its text is meant for the
// sender and carries no internal detail.
type Error struct {
	Record int    // index of the offending record; -1 for the whole payload
	Field  string // SenML label at fault, "" when not one field
	Msg    string
	err    error // internal cause, for errors.Is/As and logs
}

func (e *Error) Error() string {
	if e.Record < 0 {
		return e.Msg
	}
	return fmt.Sprintf("record %d: %s", e.Record, e.Msg)
}

// Unwrap returns the internal cause, if any.
func (e *Error) Unwrap() error { return e.err }

func payloadErr(format string, args ...any) *Error {
	return &Error{Record: -1, Msg: fmt.Sprintf(format, args...)}
}

func recordErr(i int, field, format string, args ...any) *Error {
	return &Error{Record: i, Field: field, Msg: fmt.Sprintf(format, args...)}
}

// maxVersion is the SenML version this decoder implements (RFC 8428).
const maxVersion = 10

// rawRecord is a SenML record as read from the wire; nil means absent.
type rawRecord struct {
	BaseName    *string
	BaseTime    *float64
	BaseUnit    *string
	BaseValue   *float64
	BaseSum     *float64
	BaseVersion *float64
	Name        *string
	Unit        *string
	Value       *float64
	StringValue *string
	BoolValue   *bool
	DataValue   *string
	Sum         *float64
	Time        *float64
	UpdateTime  *float64
}

// Decode decodes a SenML payload of the given content type (parameters such
// as charset are ignored). now is the receive time relative times refer to.
func Decode(contentType string, payload []byte, now time.Time, lim Limits) ([]Measurement, error) {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return nil, payloadErr("content type %q is not valid", clip(contentType))
	}
	switch mt {
	case ContentTypeJSON:
		return DecodeJSON(payload, now, lim)
	case ContentTypeCBOR:
		return DecodeCBOR(payload, now, lim)
	}
	return nil, payloadErr("content type %q is not supported; use %s or %s", clip(mt), ContentTypeJSON, ContentTypeCBOR)
}

// DecodeJSON decodes a SenML JSON pack.
func DecodeJSON(payload []byte, now time.Time, lim Limits) ([]Measurement, error) {
	if err := checkSize(payload, lim); err != nil {
		return nil, err
	}
	recs, err := parseJSON(payload, lim.MaxRecords)
	if err != nil {
		return nil, err
	}
	return normalise(recs, now, lim)
}

// DecodeCBOR decodes a SenML CBOR pack (integer labels, RFC 8428 §6).
func DecodeCBOR(payload []byte, now time.Time, lim Limits) ([]Measurement, error) {
	if err := checkSize(payload, lim); err != nil {
		return nil, err
	}
	recs, err := parseCBOR(payload, lim.MaxRecords)
	if err != nil {
		return nil, err
	}
	return normalise(recs, now, lim)
}

func checkSize(payload []byte, lim Limits) error {
	if len(payload) > lim.MaxBytes {
		return payloadErr("payload is %d bytes; the limit is %d", len(payload), lim.MaxBytes)
	}
	if len(payload) == 0 {
		return payloadErr("payload is empty")
	}
	return nil
}

// resolved is a record after base-field resolution and code lookup.
type resolved struct {
	index    int
	baseName string
	code     codes.Code
	value    float64
	time     time.Time
}

// normalise resolves base fields, converts units and merges panels.
func normalise(recs []rawRecord, now time.Time, lim Limits) ([]Measurement, error) {
	if len(recs) == 0 {
		return nil, payloadErr("pack has no records")
	}
	var (
		bn          string
		bt, bv, bs  float64
		bu          string
		out         = make([]Measurement, 0, len(recs))
		origin      = make([]int, 0, len(recs)) // record index of each measurement
		bp          []resolved                  // blood pressure components, merged at the end
		nowSec      = float64(now.UnixNano()) / 1e9
		maxFutureSc = lim.MaxFuture.Seconds()
		maxPastSec  = lim.MaxPast.Seconds()
	)
	for i := range recs {
		r := &recs[i]
		if r.BaseVersion != nil {
			v := *r.BaseVersion
			if v != math.Trunc(v) || v < 1 {
				return nil, recordErr(i, "bver", "bver must be a positive integer")
			}
			if v > maxVersion {
				return nil, recordErr(i, "bver", "SenML version %g is not supported; the highest is %d", v, maxVersion)
			}
		}
		// Base fields apply to this record and all that follow until replaced.
		if r.BaseName != nil {
			bn = *r.BaseName
		}
		if r.BaseTime != nil {
			bt = *r.BaseTime
		}
		if r.BaseUnit != nil {
			bu = *r.BaseUnit
		}
		if r.BaseValue != nil {
			bv = *r.BaseValue
		}
		if r.BaseSum != nil {
			bs = *r.BaseSum
		}
		if label := nonFinite(r); label != "" {
			return nil, recordErr(i, label, "%s is not finite", fieldNames[label])
		}
		if r.Name == nil && r.Unit == nil && r.Value == nil && r.StringValue == nil && r.BoolValue == nil &&
			r.DataValue == nil && r.Sum == nil && r.Time == nil && r.UpdateTime == nil {
			if r.BaseName == nil && r.BaseTime == nil && r.BaseUnit == nil && r.BaseValue == nil &&
				r.BaseSum == nil && r.BaseVersion == nil {
				// Labels are case-sensitive: {"N":..,"V":..} lands here
				// rather than being skipped as an extension.
				return nil, recordErr(i, "", "has no SenML fields (labels are lower case: n, v, u, t)")
			}
			// A record of base fields only sets context for the records
			// after it; it carries no reading.
			continue
		}
		switch {
		case r.StringValue != nil:
			return nil, recordErr(i, "vs", "string values (vs) are not accepted; send a numeric value (v)")
		case r.BoolValue != nil:
			return nil, recordErr(i, "vb", "boolean values (vb) are not accepted; send a numeric value (v)")
		case r.DataValue != nil:
			return nil, recordErr(i, "vd", "data values (vd) are not accepted; send a numeric value (v)")
		}

		name := bn
		if r.Name != nil {
			name += *r.Name
		}
		if name == "" {
			return nil, recordErr(i, "n", "has no name (n or bn)")
		}
		code, ok := lookupName(name)
		if !ok {
			return nil, recordErr(i, "n", "unknown name %q", clip(name))
		}
		if code.IsPanel() {
			return nil, recordErr(i, "n", "%q names the panel %s; send its parts (%s) as separate records",
				clip(name), code.LOINC, strings.Join(code.Components, ", "))
		}

		var value float64
		switch {
		case r.Sum != nil && code.LOINC != codes.Steps:
			return nil, recordErr(i, "s", "a sum (s) is accepted only for steps (%s)", codes.Steps)
		case r.Sum != nil && r.Value != nil:
			return nil, recordErr(i, "s", "has both a value (v) and a sum (s); send one")
		case r.Sum != nil:
			value = bs + *r.Sum
		case r.Value != nil:
			value = bv + *r.Value
		default:
			return nil, recordErr(i, "v", "has no value (v)")
		}
		if math.IsInf(value, 0) {
			return nil, recordErr(i, "v", "value is not finite")
		}

		unit := bu
		if r.Unit != nil {
			unit = *r.Unit
		}
		value, err := codes.Convert(value, unit, code)
		if err != nil {
			return nil, &Error{Record: i, Field: "u", Msg: err.Error(), err: err}
		}
		if value < code.Min || value > code.Max {
			return nil, recordErr(i, "v", "value is outside the possible range %s–%s %s for %s (%s)",
				fmtNum(code.Min), fmtNum(code.Max), code.Unit, code.LOINC, code.Display)
		}

		t := bt
		if r.Time != nil {
			t += *r.Time
		}
		at, terr := resolveTime(t, now, nowSec, maxFutureSc, maxPastSec, lim)
		if terr != "" {
			return nil, recordErr(i, "t", "%s", terr)
		}

		switch code.LOINC {
		case codes.SystolicBP, codes.DiastolicBP, codes.MeanBP:
			bp = append(bp, resolved{index: i, baseName: bn, code: code, value: value, time: at})
			continue
		}
		out = append(out, Measurement{Code: code.LOINC, MDC: code.MDC, Value: value, HasValue: true, Unit: code.Unit, Time: at})
		origin = append(origin, i)
	}
	if len(bp) > 0 {
		var err error
		out, origin, err = mergeBloodPressure(bp, out, origin)
		if err != nil {
			return nil, err
		}
	}
	if len(out) == 0 {
		return nil, payloadErr("pack has no readings")
	}
	if err := checkDuplicates(out, origin); err != nil {
		return nil, err
	}
	return out, nil
}

// fieldNames are the words error messages use for numeric labels.
var fieldNames = map[string]string{
	"bt": "base time (bt)", "bv": "base value (bv)", "bs": "base sum (bs)",
	"t": "time (t)", "v": "value", "s": "sum (s)", "ut": "update time (ut)",
}

// nonFinite returns the label of the first NaN or infinite number in r.
func nonFinite(r *rawRecord) string {
	for _, f := range [...]struct {
		label string
		v     *float64
	}{{"bt", r.BaseTime}, {"bv", r.BaseValue}, {"bs", r.BaseSum}, {"t", r.Time}, {"v", r.Value}, {"s", r.Sum}, {"ut", r.UpdateTime}} {
		if f.v != nil && (math.IsNaN(*f.v) || math.IsInf(*f.v, 0)) {
			return f.label
		}
	}
	return ""
}

// lookupName resolves a full SenML name. Only when the full name is not
// known is the prefix up to the last ':' or '/' dropped, so that a base name
// identifying the device ("urn:dev:mac:0024befffe804ff1:") may precede the
// code; trying the full name first keeps codes that could contain those
// characters unambiguous.
func lookupName(name string) (codes.Code, bool) {
	if c, ok := codes.Lookup(name); ok {
		return c, true
	}
	if i := strings.LastIndexAny(name, ":/"); i >= 0 && i < len(name)-1 {
		return codes.Lookup(name[i+1:])
	}
	return codes.Code{}, false
}

// unixTimeThreshold is 2^28 s: RFC 8428 §4.5.3 reads smaller resolved times
// as relative to now and larger ones as seconds since 1970.
const unixTimeThreshold = 1 << 28

const maxRFC3339 = 253402300799 // 9999-12-31T23:59:59Z in seconds since 1970

// resolveTime turns a resolved SenML time into a time.Time within limits.
// Times are rounded to the microsecond: float64 seconds carry about that
// much precision for current dates, and anything finer would be noise that
// makes the same reading look different on resend.
func resolveTime(t float64, now time.Time, nowSec, maxFuture, maxPast float64, lim Limits) (time.Time, string) {
	relative := t < unixTimeThreshold
	abs := t
	if relative {
		abs = nowSec + t
	}
	switch {
	case abs-nowSec > maxFuture:
		return time.Time{}, fmt.Sprintf("time %s is more than %s in the future", fmtSec(abs), fmtDuration(lim.MaxFuture))
	case nowSec-abs > maxPast:
		return time.Time{}, fmt.Sprintf("time %s is more than %s in the past", fmtSec(abs), fmtDuration(lim.MaxPast))
	}
	// Beyond these bounds the conversions below would overflow; only limits
	// far wider than any sane configuration reach them.
	if relative && math.Abs(t) > 9e9 || !relative && abs > maxRFC3339 {
		return time.Time{}, fmt.Sprintf("time %s is out of range", fmtSec(abs))
	}
	if relative {
		d := time.Duration(math.Round(t * 1e6))
		return now.Add(d * time.Microsecond).UTC().Round(time.Microsecond), ""
	}
	sec, frac := math.Modf(abs)
	return time.Unix(int64(sec), int64(math.Round(frac*1e6))*1e3).UTC().Round(time.Microsecond), ""
}

// fmtSec renders seconds since 1970 as RFC 3339 when representable.
func fmtSec(s float64) string {
	if s < -62135596800 || s > maxRFC3339 {
		return fmt.Sprintf("%g (seconds since 1970)", s)
	}
	sec, frac := math.Modf(s)
	return time.Unix(int64(sec), int64(frac*1e9)).UTC().Format(time.RFC3339)
}

// mergeBloodPressure joins systolic, diastolic and mean records that share a
// time and base name into one panel measurement, placed where the first of
// them was in the pack.
func mergeBloodPressure(parts []resolved, out []Measurement, origin []int) ([]Measurement, []int, error) {
	type key struct {
		baseName string
		time     time.Time
	}
	type group struct {
		first int
		parts [3]*resolved // systolic, diastolic, mean
	}
	var order []key
	groups := map[key]*group{}
	for i := range parts {
		p := &parts[i]
		k := key{p.baseName, p.time}
		g := groups[k]
		if g == nil {
			g = &group{first: p.index}
			groups[k] = g
			order = append(order, k)
		}
		slot := 0
		switch p.code.LOINC {
		case codes.DiastolicBP:
			slot = 1
		case codes.MeanBP:
			slot = 2
		}
		if g.parts[slot] != nil {
			return nil, nil, recordErr(p.index, "n", "repeats %s (%s) of record %d at the same time",
				p.code.LOINC, p.code.Display, g.parts[slot].index)
		}
		g.parts[slot] = p
	}
	panel, _ := codes.ByLOINC(codes.BloodPressurePanel)
	for _, k := range order {
		g := groups[k]
		if g.parts[0] == nil || g.parts[1] == nil {
			return nil, nil, recordErr(g.first, "n", "blood pressure needs systolic and diastolic at the same time")
		}
		m := Measurement{Code: panel.LOINC, MDC: panel.MDC, Unit: panel.Unit, Time: k.time}
		for _, p := range g.parts {
			if p != nil {
				m.Components = append(m.Components, reading.Component{
					Code: p.code.LOINC, MDC: p.code.MDC, Value: p.value, Unit: p.code.Unit,
				})
			}
		}
		// Insert in pack order so output follows the sender's order.
		at := len(origin)
		for j, o := range origin {
			if o > g.first {
				at = j
				break
			}
		}
		out = append(out, Measurement{})
		copy(out[at+1:], out[at:])
		out[at] = m
		origin = append(origin, 0)
		copy(origin[at+1:], origin[at:])
		origin[at] = g.first
	}
	return out, origin, nil
}

// checkDuplicates rejects two readings of one code at one time: downstream
// they share an idempotency key, so one would silently replace the other.
func checkDuplicates(out []Measurement, origin []int) error {
	if len(out) <= 16 { // typical packs: pairwise beats building a map
		for i := 1; i < len(out); i++ {
			for j := 0; j < i; j++ {
				if out[i].Code == out[j].Code && out[i].Time.Equal(out[j].Time) {
					return recordErr(origin[i], "t", "repeats %s at the same time as record %d", out[i].Code, origin[j])
				}
			}
		}
		return nil
	}
	type key struct {
		code string
		time time.Time
	}
	seen := make(map[key]int, len(out))
	for i, m := range out {
		k := key{m.Code, m.Time}
		if first, dup := seen[k]; dup {
			return recordErr(origin[i], "t", "repeats %s at the same time as record %d", m.Code, first)
		}
		seen[k] = origin[i]
	}
	return nil
}

// fmtDuration writes whole days as days ("366 days") and anything else in
// Go's notation ("5m0s").
func fmtDuration(d time.Duration) string {
	const day = 24 * time.Hour
	if d >= day && d%day == 0 {
		return fmt.Sprintf("%d days", d/day)
	}
	return d.String()
}

func fmtNum(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

// clip keeps echoed input short in error messages.
func clip(s string) string {
	const max = 64
	if len(s) > max {
		return s[:max] + "…"
	}
	return s
}
