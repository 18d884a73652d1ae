package hl7

import (
	"bytes"
	"strconv"
	"strings"
	"time"
)

// Acknowledgment codes (MSA-1, original mode).
const (
	AA = "AA" // accepted: every reading in the message is durable
	AE = "AE" // error: the message's content is wrong; resending it unchanged will fail again
	AR = "AR" // rejected: the message cannot be processed (type, version, structure) or Tend could not take it right now
)

// Ack builds the acknowledgement of req in req's delimiters and version:
// MSH, MSA and one ERR per problem (ERR-2/3/4/8 from v2.5 on, ERR-1 before).
// id becomes the ACK's own MSH-10. Segments end in CR; the caller frames
// the result.
func Ack(req *Message, code string, errs []*Error, id string, now time.Time) []byte {
	h := req.MSH()
	d := req.Delims
	ver := h.Get(12, 1, 1, 1)
	if !knownVersion(ver) {
		ver = "2.6"
	}
	return build(d, ackHeader{
		sendingApp:  orDefault(safeRaw(h.Raw(5)), "TEND"),
		sendingFac:  safeRaw(h.Raw(6)),
		receiveApp:  safeRaw(h.Raw(3)),
		receiveFac:  safeRaw(h.Raw(4)),
		event:       d.EscapeValue(clip(h.Get(9, 1, 2, 1), 3)),
		control:     d.EscapeValue(clip(h.Get(10, 1, 1, 1), 199)),
		processing:  orDefault(d.EscapeValue(clip(h.Get(11, 1, 1, 1), 1)), "P"),
		version:     ver,
		encodingRaw: h.Raw(2),
	}, code, errs, occurrences(req, errs), id, now)
}

// AckUnparsed answers bytes that Parse refused. It salvages what it can of
// MSH (delimiters, control id, version) so the sender can match the answer
// to what it sent.
func AckUnparsed(raw []byte, code string, errs []*Error, id string, now time.Time) []byte {
	d := DefaultDelimiters
	hdr := ackHeader{sendingApp: "TEND", version: "2.6", processing: "P"}
	raw = bytes.TrimLeft(raw, "\r\n")
	if len(raw) > 8 && bytes.HasPrefix(raw, []byte("MSH")) {
		cand := Delimiters{Field: raw[3], Component: raw[4], Repetition: raw[5], Escape: raw[6], Subcomponent: raw[7]}
		if cand.check() != nil {
			return build(d, hdr.withEncoding(d), code, errs, nil, id, now)
		}
		d = cand
		line := raw
		if i := bytes.IndexAny(line, "\r\n"); i >= 0 {
			line = line[:i]
		}
		fs := strings.Split(string(line), string(raw[3]))
		field := func(n int) string { // MSH numbering
			if n-1 < len(fs) {
				return fs[n-1]
			}
			return ""
		}
		hdr.control = d.EscapeValue(clip(d.Unescape(nth(field(10), d.Component, 1)), 199))
		if v := nth(field(12), d.Component, 1); knownVersion(v) {
			hdr.version = v
		}
		hdr.receiveApp = safeRaw(field(3))
		hdr.receiveFac = safeRaw(field(4))
	}
	return build(d, hdr.withEncoding(d), code, errs, nil, id, now)
}

func (h ackHeader) withEncoding(d Delimiters) ackHeader {
	h.encodingRaw = string([]byte{d.Component, d.Repetition, d.Escape, d.Subcomponent})
	return h
}

type ackHeader struct {
	sendingApp, sendingFac, receiveApp, receiveFac string
	event, control, processing, version            string
	encodingRaw                                    string
}

func build(d Delimiters, h ackHeader, code string, errs []*Error, occ []int, id string, now time.Time) []byte {
	f := string(d.Field)
	c := string(d.Component)
	var b strings.Builder
	b.Grow(256)
	msgType := "ACK"
	if h.event != "" {
		msgType += c + h.event + c + "ACK"
	}
	b.WriteString("MSH" + f + h.encodingRaw + f + h.sendingApp + f + h.sendingFac + f + h.receiveApp + f + h.receiveFac + f +
		FormatTime(now) + f + f + msgType + f + d.EscapeValue(id) + f + h.processing + f + h.version + "\r")
	b.WriteString("MSA" + f + code + f + h.control)
	if code != AA && len(errs) > 0 && versionBefore(h.version, 2, 7) {
		// MSA-3 is withdrawn from v2.7; before that many receivers show
		// only it, so it repeats the first problem.
		b.WriteString(f + d.EscapeValue(clip(errs[0].Error(), 80)))
	}
	b.WriteString("\r")
	for i, e := range errs {
		seq := e.Sequence
		if occ != nil {
			seq = occ[i]
		}
		writeERR(&b, d, h.version, e, seq)
	}
	return []byte(b.String())
}

func writeERR(b *strings.Builder, d Delimiters, version string, e *Error, occurrence int) {
	f, c, s := string(d.Field), string(d.Component), string(d.Subcomponent)
	code := e.Code
	if code == 0 {
		code = ErrInternal
	}
	codeText := d.EscapeValue(conditionText[code])
	text := d.EscapeValue(e.Error())
	sev := e.Severity
	if sev == 0 {
		sev = 'E'
	}
	seq := ""
	if occurrence > 0 {
		seq = strconv.Itoa(occurrence)
	}
	field := ""
	if e.Field > 0 {
		field = strconv.Itoa(e.Field)
	}
	seg := d.EscapeValue(e.Segment)
	if versionBefore(version, 2, 5) {
		// ERR-1 (ELD): segment^sequence^field^code&text&HL70357.
		b.WriteString("ERR" + f + seg + c + seq + c + field + c + strconv.Itoa(code) + s + codeText + s + "HL70357" + "\r")
		return
	}
	loc := ""
	if e.Segment != "" {
		loc = seg + c + seq + c + field
	}
	b.WriteString("ERR" + f + f + loc + f + strconv.Itoa(code) + c + codeText + c + "HL70357" + f + string(sev) + f + f + f + f + text + "\r")
}

// conditionText is the HL7 table 0357 text of each code Tend uses.
var conditionText = map[int]string{
	ErrSegmentSequence: "Segment sequence error",
	ErrRequiredMissing: "Required field missing",
	ErrDataType:        "Data type error",
	ErrTableValue:      "Table value not found",
	ErrUnsupportedType: "Unsupported message type",
	ErrUnsupportedEvt:  "Unsupported event code",
	ErrUnsupportedVer:  "Unsupported version id",
	ErrUnknownKey:      "Unknown key identifier",
	ErrInternal:        "Application internal error",
}

// knownVersion reports whether v names an HL7 v2 version Tend reads
// (2.1 to 2.8, with or without a point release such as 2.5.1).
func knownVersion(v string) bool {
	if len(v) < 3 || v[0] != '2' || v[1] != '.' || v[2] < '1' || v[2] > '8' {
		return false
	}
	rest := v[3:]
	if rest == "" {
		return true
	}
	return rest[0] == '.' && allDigits(rest[1:]) && len(rest) <= 3
}

// SupportedVersion reports whether Tend accepts messages of version v
// (v2.3 to v2.8, point releases included).
func SupportedVersion(v string) bool { return knownVersion(v) && v[2] >= '3' }

// versionBefore reports whether v (known to be 2.x) is before major.minor.
func versionBefore(v string, major, minor int) bool {
	if len(v) < 3 {
		return false
	}
	return int(v[0]-'0') < major || (int(v[0]-'0') == major && int(v[2]-'0') < minor)
}

// safeRaw keeps a field taken as received from carrying bytes that would
// break a segment or an MLLP frame.
func safeRaw(s string) string {
	s = clip(s, 227)
	if strings.IndexFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }) < 0 {
		return s
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, s)
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// occurrences gives, for each error, the occurrence of its segment type
// that ERR-2 counts (the third OBX is OBX^3 wherever it stands), from the
// segment's position in the message.
func occurrences(m *Message, errs []*Error) []int {
	out := make([]int, len(errs))
	for i, e := range errs {
		if e.Sequence < 1 || e.Sequence > len(m.Segments) || m.Segments[e.Sequence-1].Name != e.Segment {
			out[i] = e.Sequence
			continue
		}
		for j := 0; j < e.Sequence; j++ {
			if m.Segments[j].Name == e.Segment {
				out[i]++
			}
		}
	}
	return out
}
