// Package gatt decodes Bluetooth GATT health characteristics that a gateway
// (a phone app or home hub) forwards as raw bytes, and turns them into
// measurements with Tend codes and canonical units.
//
// # Gateway format
//
// A gateway posts the characteristic values it received, unchanged, in a
// JSON envelope with content type application/vnd.tend.gatt+json, over HTTP
// (POST /api/v1/devices/{id}/obs) or MQTT (tend/v1/devices/{id}/obs). The
// body is one object or an array of them:
//
//		{"uuid":"2A35","hex":"1e8a0058007800...","t":1795000000.25,"tz":"+01:00"}
//
//	  - uuid: the characteristic, as 16-bit hex ("2A35", "0x2a35") or the full
//	    Bluetooth base UUID ("00002a35-0000-1000-8000-00805f9b34fb").
//	  - hex or base64: the value bytes exactly as notified or indicated, in
//	    hex (spaces allowed) or standard base64. Exactly one of the two.
//	  - t: when the gateway received the value, in seconds since 1970
//	    (fractions allowed) or as an RFC 3339 string. Optional; Tend's receive
//	    time is used without it. Readings whose characteristic carries no time
//	    stamp (heart rate, continuous SpO2) are placed at t.
//	  - tz: the UTC offset of the device's clock ("+01:00", "-05:30", "Z"),
//	    used to read the local time stamps GATT devices send. Optional, UTC
//	    without it.
//	  - session_start: for CGM (0x2AA7), the CGM Session Start Time read from
//	    the sensor; each record is placed at session_start + its time offset.
//	    Without it the last record of the value is placed at t and the others
//	    before it by their offsets.
//
// Over MQTT 5 the content type travels in the PUBLISH content-type property;
// over MQTT 3.1.1, which has none, a JSON payload whose first object has a
// "uuid" member is taken for this format.
//
// # What becomes a reading
//
// Values travel in the canonical unit of their code (kPa, °F, lb, inches,
// kg/L and mol/L are converted). IEEE 11073 special values (NaN, NRes, ±INF,
// reserved) never become numbers: the reading is left out and the reason
// reported. A device status that invalidates a measurement (sensor
// malfunction, strip error, sensor unconnected, data for testing) does the
// same; a status that qualifies it becomes a flag reading in the
// urn:tend:code system at the same time (body-movement, cuff-loose,
// irregular-pulse, improper-position, device-fault, sensor-off), which rules
// can alarm on. Sensor contact of a heart rate sensor is reported as
// sensor-off 1 or 0, which the default technical alarm follows.
package gatt

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/tendhealth/tend/internal/senml"
)

// ContentType is the media type of the gateway envelope.
const ContentType = "application/vnd.tend.gatt+json"

// Characteristic UUIDs (16-bit, Bluetooth SIG assigned numbers).
const (
	UUIDHeartRate       = 0x2A37
	UUIDBloodPressure   = 0x2A35
	UUIDCuffPressure    = 0x2A36
	UUIDTemperature     = 0x2A1C
	UUIDGlucose         = 0x2A18
	UUIDGlucoseContext  = 0x2A34
	UUIDPLXSpotCheck    = 0x2A5E
	UUIDPLXContinuous   = 0x2A5F
	UUIDWeight          = 0x2A9D
	UUIDBodyComposition = 0x2A9C
	UUIDCGM             = 0x2AA7
)

// names are the characteristic names Tend decodes, by UUID.
var names = map[uint16]string{
	UUIDHeartRate: "Heart Rate Measurement", UUIDBloodPressure: "Blood Pressure Measurement",
	UUIDCuffPressure: "Intermediate Cuff Pressure", UUIDTemperature: "Temperature Measurement",
	UUIDGlucose: "Glucose Measurement", UUIDGlucoseContext: "Glucose Measurement Context",
	UUIDPLXSpotCheck: "PLX Spot-Check Measurement", UUIDPLXContinuous: "PLX Continuous Measurement",
	UUIDWeight: "Weight Measurement", UUIDBodyComposition: "Body Composition Measurement",
	UUIDCGM: "CGM Measurement",
}

// Error explains why an envelope was refused; its text is for the sender.
type Error struct {
	Item int // index of the offending item in the envelope; -1 for the whole envelope
	Msg  string
}

func (e *Error) Error() string {
	if e.Item < 0 {
		return e.Msg
	}
	return fmt.Sprintf("item %d: %s", e.Item, e.Msg)
}

// Result is what an envelope carried.
type Result struct {
	Measurements []senml.Measurement
	// Absent lists, for the sender and operator, each value the device
	// sent without a number (special values, invalidating status) and why.
	Absent []string
}

// item is one envelope entry as sent.
type item struct {
	UUID         string     `json:"uuid"`
	Hex          *string    `json:"hex"`
	Base64       *string    `json:"base64"`
	T            *timeField `json:"t"`
	TZ           *string    `json:"tz"`
	SessionStart *timeField `json:"session_start"`
}

// timeField is seconds since 1970 or an RFC 3339 string.
type timeField struct{ time.Time }

func (t *timeField) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		v, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return fmt.Errorf("time %q is not RFC 3339", clip(s))
		}
		t.Time = v
		return nil
	}
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f < 0 || f > 253402300799 {
		return fmt.Errorf("time %s is not seconds since 1970 or an RFC 3339 string", clip(string(b)))
	}
	sec, frac := math.Modf(f)
	t.Time = time.Unix(int64(sec), int64(math.Round(frac*1e6))*1e3)
	return nil
}

// Decode decodes a gateway envelope. now is Tend's receive time; lim bounds
// the envelope (MaxRecords items) and reading times as for SenML. A payload
// is accepted whole or refused whole, like a SenML pack.
func Decode(payload []byte, now time.Time, lim senml.Limits) (Result, error) {
	items, err := parseEnvelope(payload, lim.MaxRecords)
	if err != nil {
		return Result{}, err
	}
	var (
		res   Result
		seqAt = map[uint16]time.Time{} // glucose sequence number → measurement time, for its context
	)
	// Glucose measurements come before their context in GLS, but a gateway
	// batch may reorder them, so measurements are mapped first.
	order := make([]int, 0, len(items))
	for pass := 0; pass < 2; pass++ {
		for i, it := range items {
			if (it.uuid == UUIDGlucoseContext) == (pass == 1) {
				order = append(order, i)
			}
		}
	}
	origin := make([]int, 0, len(items))
	for _, i := range order {
		it := &items[i]
		c := &conv{now: now, lim: lim, at: it.t, loc: it.loc, seqAt: seqAt}
		if err := c.characteristic(it); err != nil {
			return Result{}, &Error{Item: i, Msg: fmt.Sprintf("%04X %s: %s", it.uuid, names[it.uuid], err)}
		}
		for _, a := range c.absent {
			res.Absent = append(res.Absent, fmt.Sprintf("item %d: %04X %s", i, it.uuid, a))
		}
		for range c.out {
			origin = append(origin, i)
		}
		res.Measurements = append(res.Measurements, c.out...)
	}
	if err := checkDuplicates(res.Measurements, origin); err != nil {
		return Result{}, err
	}
	return res, nil
}

// parsed is an envelope item after validation.
type parsed struct {
	uuid  uint16
	value []byte
	t     time.Time // zero: use now
	loc   *time.Location
	start time.Time // CGM session start, zero if not sent
}

// parseEnvelope reads the envelope in one pass with a streaming decoder, so
// each item's error can name its index.
func parseEnvelope(payload []byte, maxItems int) ([]parsed, error) {
	trimmed := bytes.TrimLeft(payload, " \t\r\n")
	if len(trimmed) == 0 {
		return nil, &Error{Item: -1, Msg: "payload is empty"}
	}
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	dec.DisallowUnknownFields() // a misspelt "hex" must not silently become "no value"
	var out []parsed
	switch trimmed[0] {
	case '[':
		dec.Token() // the '[' seen above
		for dec.More() {
			if maxItems > 0 && len(out) == maxItems {
				return nil, &Error{Item: -1, Msg: fmt.Sprintf("envelope has more than %d items, the limit", maxItems)}
			}
			p, msg := parseItem(dec)
			if msg != "" {
				return nil, &Error{Item: len(out), Msg: msg}
			}
			out = append(out, p)
		}
		if _, err := dec.Token(); err != nil {
			return nil, &Error{Item: -1, Msg: "envelope is not a JSON array of objects: " + jsonMsg(err)}
		}
		if len(out) == 0 {
			return nil, &Error{Item: -1, Msg: "envelope has no items"}
		}
	case '{':
		p, msg := parseItem(dec)
		if msg != "" {
			return nil, &Error{Item: 0, Msg: msg}
		}
		out = append(out, p)
	default:
		return nil, &Error{Item: -1, Msg: "envelope must be a JSON object or an array of objects"}
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, &Error{Item: -1, Msg: "envelope has data after its end"}
	}
	return out, nil
}

func parseItem(dec *json.Decoder) (parsed, string) {
	var it item
	if err := dec.Decode(&it); err != nil {
		return parsed{}, "not a valid item: " + jsonMsg(err)
	}
	var p parsed
	uuid, ok := parseUUID(it.UUID)
	if !ok {
		return p, fmt.Sprintf("uuid %q is not a Bluetooth UUID", clip(it.UUID))
	}
	if _, ok := names[uuid]; !ok {
		return p, fmt.Sprintf("characteristic %04X is not supported; Tend decodes %s", uuid, supported())
	}
	p.uuid = uuid
	switch {
	case it.Hex != nil && it.Base64 != nil:
		return p, "has both hex and base64; send one"
	case it.Hex != nil:
		b, err := hex.DecodeString(strings.Join(strings.Fields(*it.Hex), ""))
		if err != nil {
			return p, "hex is not valid hexadecimal"
		}
		p.value = b
	case it.Base64 != nil:
		b, err := base64.StdEncoding.DecodeString(*it.Base64)
		if err != nil {
			return p, "base64 is not valid standard base64"
		}
		p.value = b
	default:
		return p, "has no value (hex or base64)"
	}
	if len(p.value) == 0 {
		return p, "value is empty"
	}
	if it.T != nil {
		p.t = it.T.Time
	}
	if it.SessionStart != nil {
		p.start = it.SessionStart.Time
	}
	p.loc = time.UTC
	if it.TZ != nil {
		loc, err := parseOffset(*it.TZ)
		if err != nil {
			return p, err.Error()
		}
		p.loc = loc
	}
	return p, ""
}

// parseUUID accepts "2A35", "0x2A35" and the 128-bit form on the Bluetooth
// base UUID.
func parseUUID(s string) (uint16, bool) {
	s = strings.ToLower(strings.TrimSpace(s))
	const base = "-0000-1000-8000-00805f9b34fb"
	if len(s) == 36 && strings.HasSuffix(s, base) && strings.HasPrefix(s, "0000") {
		s = s[4:8]
	}
	s = strings.TrimPrefix(s, "0x")
	if len(s) != 4 {
		return 0, false
	}
	v, err := strconv.ParseUint(s, 16, 16)
	return uint16(v), err == nil
}

// parseOffset reads "Z", "+hh:mm" or "-hh:mm" (UTC offsets run −12:00 to
// +14:00).
func parseOffset(s string) (*time.Location, error) {
	if s == "Z" || s == "+00:00" || s == "-00:00" {
		return time.UTC, nil
	}
	t, err := time.Parse("-07:00", s)
	if err != nil {
		return nil, fmt.Errorf("tz %q is not a UTC offset like +01:00", clip(s))
	}
	_, off := t.Zone()
	if off < -12*3600 || off > 14*3600 {
		return nil, fmt.Errorf("tz %q is outside −12:00…+14:00", clip(s))
	}
	return time.FixedZone(s, off), nil
}

func supported() string {
	ids := make([]int, 0, len(names))
	for id := range names {
		ids = append(ids, int(id))
	}
	sort.Ints(ids)
	parts := make([]string, len(ids))
	for i, id := range ids {
		parts[i] = fmt.Sprintf("%04X", id)
	}
	return strings.Join(parts, ", ")
}

// jsonMsg keeps encoding/json errors short and free of Go type names.
func jsonMsg(err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("JSON syntax error at byte %d", se.Offset)
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		if te.Field == "" {
			return "an item must be a JSON object"
		}
		return fmt.Sprintf("field %q has the wrong type", te.Field)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return "the JSON ends too early"
	}
	return clip(err.Error())
}

// checkDuplicates refuses two readings of one code at one time: downstream
// they share an idempotency key, so one would silently replace the other.
func checkDuplicates(ms []senml.Measurement, origin []int) error {
	type key struct {
		code string
		t    time.Time
	}
	seen := make(map[key]int, len(ms))
	for i, m := range ms {
		k := key{m.Code, m.Time}
		if first, dup := seen[k]; dup {
			return &Error{Item: origin[i], Msg: fmt.Sprintf("repeats %s at %s, already sent by item %d",
				m.Code, m.Time.Format(time.RFC3339Nano), first)}
		}
		seen[k] = origin[i]
	}
	return nil
}

// clip keeps echoed input short in error messages.
func clip(s string) string {
	const max = 64
	if len(s) > max {
		return s[:max] + "…"
	}
	return s
}

// Sniff reports whether a payload without a content type looks like a
// gateway envelope: JSON whose first object has a "uuid" member. SenML
// defines no such label, so a SenML pack never matches. Only the first
// object is read.
func Sniff(payload []byte) bool {
	dec := json.NewDecoder(bytes.NewReader(payload))
	tok, err := dec.Token()
	if err != nil {
		return false
	}
	if tok == json.Delim('[') {
		if tok, err = dec.Token(); err != nil {
			return false
		}
	}
	if tok != json.Delim('{') {
		return false
	}
	for dec.More() {
		key, err := dec.Token()
		if err != nil {
			return false
		}
		if key == "uuid" {
			return true
		}
		var skip json.RawMessage
		if dec.Decode(&skip) != nil {
			return false
		}
	}
	return false
}

// Name returns the Bluetooth SIG name of a characteristic Tend decodes.
func Name(uuid uint16) (string, bool) {
	n, ok := names[uuid]
	return n, ok
}
