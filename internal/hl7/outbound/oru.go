// Package outbound forwards Tend's readings to an EHR as HL7 v2.6 ORU^R01
// messages in the shape of IHE PCD-01 over MLLP: a durable consumer of the
// readings stream that advances only once the EHR accepted a message (AA),
// keeps a message the EHR refused as wrong (AE) in the dead-letter store,
// and retries everything else (AR, no answer, connection refused) with a
// capped backoff, in order, without skipping.
//
// Delivery is at least once: a crash between the EHR's AA and the stream
// acknowledgement sends a message again. Its MSH-10 control id is derived
// from the readings it carries, so a resend carries the same id and the
// EHR can drop it as a duplicate.
package outbound

import (
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tendhealth/tend/internal/codes"
	"github.com/tendhealth/tend/internal/hl7"
	"github.com/tendhealth/tend/internal/reading"
)

// Header is what a forwarded message says about its sender and receiver
// (MSH-3 to MSH-6).
type Header struct {
	SendingApp        string // default "TEND"
	SendingFacility   string
	ReceivingApp      string
	ReceivingFacility string
}

// Patient is what PID and PV1 say about the patient.
type Patient struct {
	ID          string // Tend's patient id, sent as PID-3 with authority TEND
	Identifiers []Identifier
	Family      string
	Given       []string
	BirthDate   string // YYYY-MM-DD, "" when unknown
	Gender      string // FHIR administrative gender
	Location    string // "FACILITY/POINT/ROOM/BED" as Tend keeps it; "" when unknown
}

// Identifier is a patient identifier: Authority becomes CX-4, Type CX-5.
type Identifier struct {
	Value, Authority, Type string
	// AuthorityURI is a universal id (CX-4.2, type URI) when the
	// identifier's system is a URI rather than an HL7 namespace.
	AuthorityURI string
}

// Observation is one reading with the equipment identifier of its device
// (OBX-18).
type Observation struct {
	reading.Reading
	Equipment     string // the device's equipment id (e.g. EUI-64); "" uses the Tend device id
	EquipmentType string // "EUI-64" when Equipment is one
}

// Version is the HL7 version of forwarded messages.
const Version = "2.6"

// pcdProfile is MSH-21 of an IHE PCD-01 message.
const pcdProfile = "IHE_PCD_001^IHE PCD^1.3.6.1.4.1.19376.1.6.1.1.1^ISO"

// Forwardable reports whether a reading's code is one an EHR can know:
// LOINC and SNOMED CT codes are sent; Tend's own device-status signals
// (battery, sensor off, …) are not.
func Forwardable(r *reading.Reading) bool {
	c, ok := codes.ByLOINC(r.Code)
	if !ok {
		return false
	}
	switch c.SystemURI() {
	case codes.SystemLOINC, codes.SystemSNOMED:
		return true
	}
	return false
}

// ControlID derives MSH-10 from the readings a message carries (their
// idempotency keys, which name device, code and time), so the same
// readings always travel under the same control id. It is 32 hex digits
// after "T", well within the 199 characters of v2.6 MSH-10.
func ControlID(obs []Observation) string {
	keys := make([]string, len(obs))
	for i := range obs {
		keys[i] = obs[i].Patient + "\x00" + obs[i].Key()
	}
	slices.Sort(keys)
	h := sha256.New()
	for _, k := range keys {
		h.Write([]byte(k))
		h.Write([]byte{0})
	}
	return "T" + hex.EncodeToString(h.Sum(nil)[:16])
}

// BuildORU encodes one ORU^R01 for one patient. Every value taken from
// the registry or a device is escaped, so no identifier, name or code can
// break a field, a segment or the MLLP frame. Segments end in CR; the
// caller frames the result.
func BuildORU(h Header, controlID string, now time.Time, p Patient, obs []Observation) []byte {
	d := hl7.DefaultDelimiters
	e := d.EscapeValue
	var b strings.Builder
	b.Grow(256 + 160*len(obs))
	app := h.SendingApp
	if app == "" {
		app = "TEND"
	}
	// MSH-15/16 stay empty: original acknowledgement mode, so the EHR's
	// one answer is its application acknowledgement.
	b.WriteString("MSH|^~\\&|" + e(app) + "|" + e(h.SendingFacility) + "|" + e(h.ReceivingApp) + "|" + e(h.ReceivingFacility) + "|" +
		hl7.FormatTime(now) + "||ORU^R01^ORU_R01|" + e(controlID) + "|P|" + Version + "|||||||UNICODE UTF-8|||" + pcdProfile + "\r")

	b.WriteString("PID|||")
	for i, id := range p.Identifiers {
		if i > 0 {
			b.WriteByte('~')
		}
		b.WriteString(e(id.Value) + "^^^" + e(id.Authority))
		if id.AuthorityURI != "" {
			b.WriteString("&" + e(id.AuthorityURI) + "&URI")
		}
		b.WriteString("^" + e(id.Type))
	}
	if p.ID != "" {
		if len(p.Identifiers) > 0 {
			b.WriteByte('~')
		}
		b.WriteString(e(p.ID) + "^^^TEND^PI")
	}
	b.WriteString("||")
	if p.Family != "" || len(p.Given) > 0 {
		b.WriteString(e(p.Family))
		for _, g := range p.Given[:min(len(p.Given), 2)] {
			b.WriteString("^" + e(g))
		}
	}
	b.WriteString("||" + birthDate(p.BirthDate) + "|" + sex(p.Gender) + "\r")

	if p.Location != "" {
		b.WriteString("PV1||I|" + location(p.Location, e) + "\r")
	}

	first, last := obs[0].Time, obs[0].Time
	for _, o := range obs[1:] {
		first, last = minTime(first, o.Time), maxTime(last, o.Time)
	}
	b.WriteString("OBR|1||" + e(controlID) + "^" + e(app) + "|182777000^monitoring of patient^SCT|||" + dtm(first))
	if !last.Equal(first) {
		b.WriteString("|" + dtm(last))
	}
	b.WriteString("\r")

	set := 0
	for i := range obs {
		o := &obs[i]
		// Each reading is its own channel of one MDS and VMD, so the parts
		// of a blood-pressure panel share a channel and are read back as
		// one panel.
		channel := "1.1." + strconv.Itoa(i+1)
		if len(o.Components) > 0 {
			for j, c := range o.Components {
				set++
				writeOBX(&b, e, set, c.Code, channel+"."+strconv.Itoa(j+1), c.Value, c.Unit, o)
			}
			continue
		}
		if !o.HasValue {
			continue
		}
		set++
		writeOBX(&b, e, set, o.Code, channel+".1", o.Value, o.Unit, o)
	}
	return []byte(b.String())
}

func writeOBX(b *strings.Builder, e func(string) string, set int, code, sub string, value float64, unit string, o *Observation) {
	b.WriteString("OBX|" + strconv.Itoa(set) + "|NM|" + obsCode(code, e) + "|" + sub + "|" +
		strconv.FormatFloat(value, 'f', -1, 64) + "|" + e(unit) + "^" + e(unit) + "^UCUM|||||F|||" + dtm(o.Time) + "||||")
	if o.Equipment != "" {
		b.WriteString(e(o.Equipment) + "^^" + e(o.Equipment) + "^" + e(o.EquipmentType))
	} else {
		b.WriteString(e(o.Device) + "^TEND")
	}
	b.WriteString("\r")
}

// obsCode is OBX-3: the MDC term first when Tend knows its numeric code
// (as PCD-01 asks), with the LOINC code as the alternate; SNOMED CT and
// LOINC codes without an MDC term alone.
func obsCode(code string, e func(string) string) string {
	c, ok := codes.ByLOINC(code)
	if !ok {
		return e(code) + "^^LN"
	}
	system := "LN"
	if c.SystemURI() == codes.SystemSNOMED {
		system = "SCT"
	}
	own := e(c.LOINC) + "^" + e(c.Display) + "^" + system
	if c.MDCCode == 0 || c.MDC == "" {
		return own
	}
	return strconv.Itoa(c.MDCCode) + "^" + e(c.MDC) + "^MDC^" + own
}

// location turns Tend's "FACILITY/POINT/ROOM/BED" back into PV1-3 (PL:
// point of care^room^bed^facility). Three parts are read as point, room
// and bed; other shapes go whole into the point of care, since which part
// is which cannot be told.
func location(l string, e func(string) string) string {
	parts := strings.Split(l, "/")
	switch len(parts) {
	case 4:
		return e(parts[1]) + "^" + e(parts[2]) + "^" + e(parts[3]) + "^" + e(parts[0])
	case 3:
		return e(parts[0]) + "^" + e(parts[1]) + "^" + e(parts[2])
	}
	return e(l)
}

// dtm formats a reading time as an HL7 DTM in UTC with its zone, keeping
// the fraction of a second (up to the four digits HL7 allows) when there
// is one.
func dtm(t time.Time) string {
	t = t.UTC()
	if ns := t.Nanosecond(); ns >= 100_000 {
		frac := strings.TrimRight(strconv.Itoa(1_000_000_000 + ns)[1:5], "0")
		return t.Format("20060102150405") + "." + frac + "+0000"
	}
	return t.Format("20060102150405") + "+0000"
}

func birthDate(s string) string {
	t, err := time.Parse("2006-01-02", s)
	if err != nil {
		return ""
	}
	return t.Format("20060102")
}

// sex maps FHIR administrative gender to HL7 table 0001.
func sex(g string) string {
	switch g {
	case "male":
		return "M"
	case "female":
		return "F"
	case "other":
		return "O"
	case "unknown":
		return "U"
	}
	return ""
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
