package senml

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// parseJSON reads a SenML JSON pack with a small purpose-built scanner
// instead of encoding/json. Two reasons: encoding/json matches struct fields
// case-insensitively and keeps the last of duplicate keys, while SenML
// labels are case-sensitive and a duplicate is a sender bug worth reporting;
// and its token API allocates several objects per token, which matters at
// tens of thousands of readings per second. The scanner accepts exactly RFC
// 8259 JSON (checked against encoding/json by FuzzDecodeJSON) and
// additionally rejects invalid UTF-8.
func parseJSON(payload []byte, maxRecords int) ([]rawRecord, error) {
	s := &jsonScanner{b: payload}
	s.ws()
	if s.peek() != '[' {
		if s.i >= len(s.b) {
			return nil, s.syntax("")
		}
		return nil, payloadErr("payload is not a SenML pack: a JSON array of records is expected")
	}
	s.i++
	// Records average at least 10 bytes; the estimate avoids regrowth.
	recs := make([]rawRecord, 0, min(maxRecords, len(payload)/10+1))
	s.ws()
	if s.peek() == ']' {
		s.i++
	} else {
		for {
			if len(recs) >= maxRecords {
				return nil, payloadErr("pack has more than %d records; the limit is %d", maxRecords, maxRecords)
			}
			recs = append(recs, rawRecord{})
			if err := s.record(&recs[len(recs)-1], len(recs)-1); err != nil {
				return nil, err
			}
			s.ws()
			c := s.peek()
			s.i++
			if c == ']' {
				break
			}
			if c != ',' {
				s.i--
				return nil, s.syntax("expected , or ] after a record")
			}
		}
	}
	s.ws()
	if s.i != len(s.b) {
		return nil, payloadErr("payload has data after the SenML pack")
	}
	return recs, nil
}

// maxJSONDepth bounds nesting inside ignored extension fields.
const maxJSONDepth = 32

type jsonScanner struct {
	b   []byte
	i   int
	buf []byte // scratch for strings with escapes

	// Field values are carved from slabs: one allocation per 32 values
	// instead of one per value, on the ingest hot path.
	nums  slab[float64]
	strs  slab[string]
	bools slab[bool]
}

// slab hands out pointers to values stored in shared backing arrays. An
// array is never appended to beyond its capacity, so pointers stay valid.
type slab[T any] struct{ s []T }

func (p *slab[T]) new(v T) *T {
	if len(p.s) == cap(p.s) {
		p.s = make([]T, 0, 32)
	}
	p.s = append(p.s, v)
	return &p.s[len(p.s)-1]
}

func (s *jsonScanner) peek() byte {
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

func (s *jsonScanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// syntax reports malformed JSON for the whole payload with a byte offset,
// since the record boundaries are themselves in doubt.
func (s *jsonScanner) syntax(what string) *Error {
	if s.i >= len(s.b) {
		return payloadErr("payload is not valid JSON: it ends early")
	}
	c := s.b[s.i]
	found := fmt.Sprintf("%q", c)
	if c < 0x20 || c >= 0x7f {
		found = fmt.Sprintf("byte 0x%02x", c)
	}
	if what == "" {
		return payloadErr("payload is not valid JSON at byte %d: unexpected %s", s.i, found)
	}
	return payloadErr("payload is not valid JSON at byte %d: %s, found %s", s.i, what, found)
}

func (s *jsonScanner) expect(c byte, what string) *Error {
	s.ws()
	if s.peek() != c {
		return s.syntax(what)
	}
	s.i++
	return nil
}

// record reads one JSON object into r.
func (s *jsonScanner) record(r *rawRecord, idx int) error {
	s.ws()
	if c := s.peek(); c != '{' {
		if c == 0 || !strings.ContainsRune(`"-0123456789tfn[`, rune(c)) {
			return s.syntax("expected a record")
		}
		return recordErr(idx, "", "is not a JSON object")
	}
	s.i++
	s.ws()
	if s.peek() == '}' {
		s.i++
		return nil
	}
	for {
		s.ws()
		if s.peek() != '"' {
			return s.syntax("expected a field name")
		}
		key, err := s.rawString()
		if err != nil {
			return err
		}
		if err := s.expect(':', "expected :"); err != nil {
			return err
		}
		s.ws()
		if err := s.field(r, idx, key); err != nil {
			return err
		}
		s.ws()
		c := s.peek()
		s.i++
		if c == '}' {
			return nil
		}
		if c != ',' {
			s.i--
			return s.syntax("expected , or } in a record")
		}
	}
}

// field reads the value of one labelled field into r.
func (s *jsonScanner) field(r *rawRecord, idx int, key []byte) error {
	label := knownLabel(key)
	if label == "" { // an extension: ignored per RFC 8428 §4.4 unless it must be understood
		if name := string(key); mustUnderstand(name) {
			return unknownMustUnderstand(idx, name)
		}
		return s.skip(0)
	}
	if sp := r.stringField(label); sp != nil {
		if *sp != nil {
			return duplicateErr(idx, label)
		}
		if s.peek() != '"' {
			return s.typeOrSyntax(idx, label, "a string")
		}
		b, err := s.rawString()
		if err != nil {
			return err
		}
		*sp = s.strs.new(string(b))
		return nil
	}
	if np := r.numberField(label); np != nil {
		if *np != nil {
			return duplicateErr(idx, label)
		}
		if c := s.peek(); c != '-' && (c < '0' || c > '9') {
			return s.typeOrSyntax(idx, label, "a number")
		}
		f, err := s.number(idx)
		if err != nil {
			return err
		}
		*np = s.nums.new(f)
		return nil
	}
	bp := r.boolField(label)
	if *bp != nil {
		return duplicateErr(idx, label)
	}
	var b bool
	switch {
	case s.literal("true"):
		b = true
	case s.literal("false"):
	default:
		return s.typeOrSyntax(idx, label, "true or false")
	}
	*bp = s.bools.new(b)
	return nil
}

// typeOrSyntax reports a value of the wrong JSON type, or a syntax error if
// it is not a JSON value at all.
func (s *jsonScanner) typeOrSyntax(idx int, label, want string) error {
	if err := s.skip(0); err != nil {
		return err
	}
	return typeErr(idx, label, want)
}

// knownLabel maps a field name to its SenML label without allocating;
// "" means not a label this decoder implements.
func knownLabel(key []byte) string {
	switch string(key) {
	case "bn":
		return "bn"
	case "bt":
		return "bt"
	case "bu":
		return "bu"
	case "bv":
		return "bv"
	case "bs":
		return "bs"
	case "bver":
		return "bver"
	case "n":
		return "n"
	case "u":
		return "u"
	case "v":
		return "v"
	case "vs":
		return "vs"
	case "vb":
		return "vb"
	case "vd":
		return "vd"
	case "s":
		return "s"
	case "t":
		return "t"
	case "ut":
		return "ut"
	}
	return ""
}

func (s *jsonScanner) literal(lit string) bool {
	if len(s.b)-s.i >= len(lit) && string(s.b[s.i:s.i+len(lit)]) == lit {
		s.i += len(lit)
		return true
	}
	return false
}

// number reads a JSON number at s.i.
func (s *jsonScanner) number(idx int) (float64, error) {
	start := s.i
	if s.peek() == '-' {
		s.i++
	}
	switch c := s.peek(); {
	case c == '0':
		s.i++
	case c >= '1' && c <= '9':
		s.digits()
	default:
		return 0, s.syntax("expected a digit")
	}
	if s.peek() == '.' {
		s.i++
		if c := s.peek(); c < '0' || c > '9' {
			return 0, s.syntax("expected a digit after .")
		}
		s.digits()
	}
	if c := s.peek(); c == 'e' || c == 'E' {
		s.i++
		if c := s.peek(); c == '+' || c == '-' {
			s.i++
		}
		if c := s.peek(); c < '0' || c > '9' {
			return 0, s.syntax("expected a digit in the exponent")
		}
		s.digits()
	}
	f, err := strconv.ParseFloat(string(s.b[start:s.i]), 64)
	if err != nil { // out of float64 range, e.g. 1e400
		if idx < 0 {
			return 0, &Error{Record: -1, Msg: "payload has a number too large to represent", err: err}
		}
		return 0, &Error{Record: idx, Msg: "has a number too large to represent", err: err}
	}
	return f, nil
}

func (s *jsonScanner) digits() {
	for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
		s.i++
	}
}

// rawString reads a JSON string at s.i (which is '"') and returns its
// unescaped bytes. The result aliases the payload or the scratch buffer and
// is valid until the next call.
func (s *jsonScanner) rawString() ([]byte, error) {
	s.i++ // opening quote
	start := s.i
	for s.i < len(s.b) {
		c := s.b[s.i]
		switch {
		case c == '"':
			s.i++
			return s.b[start : s.i-1], nil
		case c == '\\' || c < 0x20 || c >= utf8.RuneSelf:
			return s.slowString(start)
		}
		s.i++
	}
	return nil, s.syntax("")
}

// slowString handles strings with escapes, control bytes or non-ASCII.
func (s *jsonScanner) slowString(start int) ([]byte, error) {
	s.buf = append(s.buf[:0], s.b[start:s.i]...)
	for s.i < len(s.b) {
		c := s.b[s.i]
		switch {
		case c == '"':
			s.i++
			return s.buf, nil
		case c < 0x20:
			return nil, s.syntax("control character in a string")
		case c >= utf8.RuneSelf:
			r, size := utf8.DecodeRune(s.b[s.i:])
			if r == utf8.RuneError && size <= 1 {
				return nil, s.syntax("invalid UTF-8 in a string")
			}
			s.buf = append(s.buf, s.b[s.i:s.i+size]...)
			s.i += size
		case c == '\\':
			s.i++
			e := s.peek()
			s.i++
			switch e {
			case '"', '\\', '/':
				s.buf = append(s.buf, e)
			case 'b':
				s.buf = append(s.buf, '\b')
			case 'f':
				s.buf = append(s.buf, '\f')
			case 'n':
				s.buf = append(s.buf, '\n')
			case 'r':
				s.buf = append(s.buf, '\r')
			case 't':
				s.buf = append(s.buf, '\t')
			case 'u':
				r, ok := s.hex4()
				if !ok {
					return nil, s.syntax("invalid \\u escape")
				}
				if utf16.IsSurrogate(r) {
					// A high surrogate pairs with a following \u low one;
					// a lone surrogate becomes U+FFFD, as in encoding/json.
					save := s.i
					if s.literal(`\u`) {
						if r2, ok := s.hex4(); ok {
							if d := utf16.DecodeRune(r, r2); d != utf8.RuneError {
								s.buf = utf8.AppendRune(s.buf, d)
								continue
							}
						}
					}
					s.i = save
					r = utf8.RuneError
				}
				s.buf = utf8.AppendRune(s.buf, r)
			default:
				s.i -= 2
				return nil, s.syntax("invalid escape")
			}
		default:
			s.buf = append(s.buf, c)
			s.i++
		}
	}
	return nil, s.syntax("")
}

func (s *jsonScanner) hex4() (rune, bool) {
	if s.i+4 > len(s.b) {
		return 0, false
	}
	var r rune
	for _, c := range s.b[s.i : s.i+4] {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	s.i += 4
	return r, true
}

// skip validates and passes over any JSON value at s.i.
func (s *jsonScanner) skip(depth int) error {
	switch c := s.peek(); {
	case c == '"':
		_, err := s.rawString()
		return err
	case c == '-' || (c >= '0' && c <= '9'):
		_, err := s.number(-1)
		return err
	case c == 't' && s.literal("true"), c == 'f' && s.literal("false"), c == 'n' && s.literal("null"):
		return nil
	case c == '{' || c == '[':
		if depth >= maxJSONDepth {
			return payloadErr("payload nests values more than %d deep", maxJSONDepth)
		}
		closing := byte('}')
		if c == '[' {
			closing = ']'
		}
		s.i++
		s.ws()
		if s.peek() == closing {
			s.i++
			return nil
		}
		for {
			s.ws()
			if c == '{' {
				if s.peek() != '"' {
					return s.syntax("expected a field name")
				}
				if _, err := s.rawString(); err != nil {
					return err
				}
				if err := s.expect(':', "expected :"); err != nil {
					return err
				}
				s.ws()
			}
			if err := s.skip(depth + 1); err != nil {
				return err
			}
			s.ws()
			n := s.peek()
			s.i++
			if n == closing {
				return nil
			}
			if n != ',' {
				s.i--
				return s.syntax("expected , or " + string(closing))
			}
		}
	}
	return s.syntax("expected a value")
}
