// Package hl7 reads and writes HL7 v2.x messages (ER7, the "pipe and hat"
// encoding): delimiters taken from MSH, escape sequences, repetitions,
// components and subcomponents, and CR, CRLF or LF between segments. It
// knows nothing about what a message means; that is for its callers.
//
// Values are kept as the raw bytes of the message and unescaped only when
// asked for, so parsing a message costs one pass and a few slices.
package hl7

import (
	"bytes"
	"fmt"
	"strings"
)

// Delimiters are the separators and escape character a message declares in
// MSH-1 and MSH-2.
type Delimiters struct {
	Field        byte
	Component    byte
	Repetition   byte
	Escape       byte
	Subcomponent byte
	Truncation   byte // v2.7+; 0 when not declared
}

// DefaultDelimiters are |^~\& (what nearly every sender uses).
var DefaultDelimiters = Delimiters{Field: '|', Component: '^', Repetition: '~', Escape: '\\', Subcomponent: '&'}

// Message is a parsed HL7 v2 message.
type Message struct {
	Delims   Delimiters
	Segments []Segment
}

// Segment is one segment: its name and its raw (still escaped) fields.
type Segment struct {
	Name string
	// fields[i] is field i of the segment in HL7 numbering; fields[0] is
	// the name. For MSH, fields[1] is the field separator and fields[2] the
	// encoding characters, as the standard counts them.
	fields []string
	d      *Delimiters
}

// Error is a problem with a message, located the way an HL7 ERR segment
// locates it, with a code from HL7 table 0357.
type Error struct {
	Segment  string // segment name, "" when the message as a whole
	Sequence int    // 1-based position of the segment in the message (Ack turns it into the occurrence ERR-2 counts)
	Field    int    // 0 when the whole segment
	Code     int    // HL7 table 0357 (100 segment sequence, 101 required field missing, 102 data type, 103 table value, 200 unsupported message type, 203 unsupported version, 207 internal error)
	Severity byte   // 'E' error, 'W' warning; 0 means 'E'
	Msg      string // safe to show to the sender
}

func (e *Error) Error() string {
	if e.Segment == "" {
		return e.Msg
	}
	if e.Sequence == 0 {
		return fmt.Sprintf("%s-%d: %s", e.Segment, e.Field, e.Msg)
	}
	if e.Field == 0 {
		return fmt.Sprintf("%s (segment %d of the message): %s", e.Segment, e.Sequence, e.Msg)
	}
	return fmt.Sprintf("%s-%d (segment %d of the message): %s", e.Segment, e.Field, e.Sequence, e.Msg)
}

// HL7 table 0357 message error condition codes used by Tend.
const (
	ErrSegmentSequence = 100
	ErrRequiredMissing = 101
	ErrDataType        = 102
	ErrTableValue      = 103
	ErrUnsupportedType = 200
	ErrUnsupportedEvt  = 201
	ErrUnsupportedVer  = 203
	ErrUnknownKey      = 204
	ErrInternal        = 207
)

// Parse parses one message. Segments may end in CR, CRLF or LF; empty
// lines are skipped. The message must start with MSH and declare distinct,
// printable delimiters.
func Parse(b []byte) (*Message, error) {
	b = bytes.TrimLeft(b, "\r\n")
	if len(b) < 8 || string(b[:3]) != "MSH" {
		return nil, &Error{Code: ErrSegmentSequence, Msg: "message does not start with an MSH segment"}
	}
	d := Delimiters{Field: b[3]}
	enc := b[4:]
	if i := bytes.IndexByte(enc, d.Field); i >= 0 {
		enc = enc[:i]
	} else {
		return nil, &Error{Segment: "MSH", Sequence: 1, Field: 2, Code: ErrDataType, Msg: "MSH-2 encoding characters are not followed by a field separator"}
	}
	if len(enc) < 4 || len(enc) > 5 {
		return nil, &Error{Segment: "MSH", Sequence: 1, Field: 2, Code: ErrDataType, Msg: "MSH-2 must hold 4 or 5 encoding characters"}
	}
	d.Component, d.Repetition, d.Escape, d.Subcomponent = enc[0], enc[1], enc[2], enc[3]
	if len(enc) == 5 {
		d.Truncation = enc[4]
	}
	if err := d.check(); err != nil {
		return nil, err
	}
	m := &Message{Delims: d}
	m.Segments = make([]Segment, 0, bytes.Count(b, []byte{'\r'})+bytes.Count(b, []byte{'\n'})+1)
	s := string(b) // one copy; every value below is a substring of it
	for len(s) > 0 {
		end := strings.IndexAny(s, "\r\n")
		line := s
		if end >= 0 {
			line, s = s[:end], s[end+1:]
		} else {
			s = ""
		}
		if line == "" {
			continue
		}
		seg, err := m.parseSegment(line, len(m.Segments) == 0)
		if err != nil {
			return nil, err
		}
		m.Segments = append(m.Segments, seg)
	}
	return m, nil
}

func (d *Delimiters) check() error {
	seps := []byte{d.Field, d.Component, d.Repetition, d.Escape, d.Subcomponent}
	if d.Truncation != 0 {
		seps = append(seps, d.Truncation)
	}
	for i, c := range seps {
		if c < 0x21 || c > 0x7e || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') {
			return &Error{Segment: "MSH", Sequence: 1, Field: 2, Code: ErrDataType, Msg: fmt.Sprintf("delimiter %q is not a printable punctuation character", c)}
		}
		for _, o := range seps[:i] {
			if o == c {
				return &Error{Segment: "MSH", Sequence: 1, Field: 2, Code: ErrDataType, Msg: fmt.Sprintf("delimiter %q is declared twice", c)}
			}
		}
	}
	return nil
}

func (m *Message) parseSegment(line string, first bool) (Segment, error) {
	name := line
	if i := strings.IndexByte(line, m.Delims.Field); i >= 0 {
		name = line[:i]
	}
	seq := len(m.Segments) + 1
	if !validName(name) {
		return Segment{}, &Error{Segment: clip(name, 3), Sequence: seq, Code: ErrSegmentSequence,
			Msg: fmt.Sprintf("segment %d has no valid segment name (three upper-case letters or digits)", seq)}
	}
	if first != (name == "MSH") {
		if first {
			return Segment{}, &Error{Code: ErrSegmentSequence, Msg: "message does not start with an MSH segment"}
		}
		return Segment{}, &Error{Segment: "MSH", Sequence: seq, Code: ErrSegmentSequence, Msg: "a second MSH segment inside one message (batches are not accepted; send one message per MLLP frame)"}
	}
	parts := strings.Split(line, string(m.Delims.Field))
	seg := Segment{Name: name, d: &m.Delims}
	if name == "MSH" {
		// MSH-1 is the separator itself, so the numbering shifts by one.
		seg.fields = make([]string, 0, len(parts)+1)
		seg.fields = append(seg.fields, "MSH", string(m.Delims.Field))
		seg.fields = append(seg.fields, parts[1:]...)
	} else {
		seg.fields = parts
	}
	return seg, nil
}

func validName(s string) bool {
	if len(s) != 3 {
		return false
	}
	for i := 0; i < 3; i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// All returns the segments named name, in order.
func (m *Message) All(name string) []*Segment {
	var out []*Segment
	for i := range m.Segments {
		if m.Segments[i].Name == name {
			out = append(out, &m.Segments[i])
		}
	}
	return out
}

// First returns the first segment named name, or nil.
func (m *Message) First(name string) *Segment {
	for i := range m.Segments {
		if m.Segments[i].Name == name {
			return &m.Segments[i]
		}
	}
	return nil
}

// MSH returns the header segment (Parse guarantees it is first).
func (m *Message) MSH() *Segment { return &m.Segments[0] }

// Header is what every message carries in MSH, unescaped.
type Header struct {
	SendingApp      string // MSH-3.1
	SendingFacility string // MSH-4.1
	ReceivingApp    string // MSH-5.1
	ReceivingFac    string // MSH-6.1
	Time            string // MSH-7.1, raw DTM
	Type            string // MSH-9.1, e.g. ORU
	Event           string // MSH-9.2, e.g. R01
	ControlID       string // MSH-10
	ProcessingID    string // MSH-11.1
	Version         string // MSH-12.1
}

// Header reads MSH.
func (m *Message) Header() Header {
	h := m.MSH()
	return Header{
		SendingApp: h.Get(3, 1, 1, 1), SendingFacility: h.Get(4, 1, 1, 1),
		ReceivingApp: h.Get(5, 1, 1, 1), ReceivingFac: h.Get(6, 1, 1, 1),
		Time: h.Get(7, 1, 1, 1), Type: h.Get(9, 1, 1, 1), Event: h.Get(9, 1, 2, 1),
		ControlID: h.Get(10, 1, 1, 1), ProcessingID: h.Get(11, 1, 1, 1), Version: h.Get(12, 1, 1, 1),
	}
}

// Fields returns how many fields the segment has (the highest present
// field number).
func (s *Segment) Fields() int { return len(s.fields) - 1 }

// Raw returns field n as received (escaped, with every separator), "" when
// absent. MSH-1 and MSH-2 are the delimiters themselves.
func (s *Segment) Raw(n int) string {
	if s == nil || n <= 0 || n >= len(s.fields) {
		return ""
	}
	return s.fields[n]
}

// Reps returns the number of repetitions of field n (0 when empty).
func (s *Segment) Reps(n int) int {
	f := s.Raw(n)
	if f == "" {
		return 0
	}
	if s.Name == "MSH" && n <= 2 {
		return 1
	}
	return strings.Count(f, string(s.d.Repetition)) + 1
}

// Get returns one value unescaped: repetition rep, component comp and
// subcomponent sub of field n, all counted from 1. Missing parts are "".
// The HL7 null value "" (two double quotes) is returned as is.
func (s *Segment) Get(n, rep, comp, sub int) string {
	f := s.Raw(n)
	if f == "" {
		return ""
	}
	if s.Name == "MSH" && n <= 2 {
		if rep == 1 && comp == 1 && sub == 1 {
			return f
		}
		return ""
	}
	v := nth(f, s.d.Repetition, rep)
	v = nth(v, s.d.Component, comp)
	v = nth(v, s.d.Subcomponent, sub)
	return s.d.Unescape(v)
}

// C is a shorthand for component comp of the first repetition of field n.
func (s *Segment) C(n, comp int) string { return s.Get(n, 1, comp, 1) }

// nth returns the i-th (1-based) part of s split at sep without allocating.
func nth(s string, sep byte, i int) string {
	for ; i > 1; i-- {
		j := strings.IndexByte(s, sep)
		if j < 0 {
			return ""
		}
		s = s[j+1:]
	}
	if j := strings.IndexByte(s, sep); j >= 0 {
		return s[:j]
	}
	return s
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
