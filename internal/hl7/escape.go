package hl7

import (
	"strings"
)

// Unescape decodes HL7 escape sequences (v2.8 §2.7): \F\ \S\ \T\ \R\ \E\
// and \P\ stand for the delimiters, \Xhh…\ for bytes, \.br\ for a line
// break. Formatting and character-set sequences (\H\ \N\ \.sp\ \Cxxyy\
// \Mxxyyzz\ \Z…\) carry no data and are dropped. An escape character that
// does not start a complete sequence is kept literally: real senders get
// this wrong, and losing their text would be worse than showing it.
func (d *Delimiters) Unescape(s string) string {
	if strings.IndexByte(s, d.Escape) < 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != d.Escape {
			b.WriteByte(c)
			continue
		}
		end := strings.IndexByte(s[i+1:], d.Escape)
		if end < 0 {
			b.WriteString(s[i:])
			break
		}
		seq := s[i+1 : i+1+end]
		if out, ok := d.decodeEscape(seq); ok {
			b.WriteString(out)
			i += end + 1
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

func (d *Delimiters) decodeEscape(seq string) (string, bool) {
	switch seq {
	case "F":
		return string(d.Field), true
	case "S":
		return string(d.Component), true
	case "T":
		return string(d.Subcomponent), true
	case "R":
		return string(d.Repetition), true
	case "E":
		return string(d.Escape), true
	case "P":
		if d.Truncation != 0 {
			return string(d.Truncation), true
		}
		return "#", true
	case ".br":
		return "\n", true
	case "H", "N":
		return "", true
	}
	if seq == "" {
		return "", false
	}
	switch seq[0] {
	case 'X', 'x':
		hex := seq[1:]
		if len(hex) == 0 || len(hex)%2 != 0 {
			return "", false
		}
		out := make([]byte, 0, len(hex)/2)
		for j := 0; j < len(hex); j += 2 {
			hi, ok1 := unhex(hex[j])
			lo, ok2 := unhex(hex[j+1])
			if !ok1 || !ok2 {
				return "", false
			}
			out = append(out, hi<<4|lo)
		}
		return string(out), true
	case 'C', 'M', 'Z':
		return "", true
	case '.':
		// Formatting commands (.sp, .in, .ti, .sk, .ce, .fi, .nf).
		return "", true
	}
	return "", false
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// EscapeValue encodes s so it can be placed in a field: delimiters become escape
// sequences and control characters (CR, LF, the MLLP framing bytes) become
// \Xhh\, so no value can break a segment or a frame.
func (d *Delimiters) EscapeValue(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == d.Field:
			b.WriteString(string(d.Escape) + "F" + string(d.Escape))
		case c == d.Component:
			b.WriteString(string(d.Escape) + "S" + string(d.Escape))
		case c == d.Subcomponent:
			b.WriteString(string(d.Escape) + "T" + string(d.Escape))
		case c == d.Repetition:
			b.WriteString(string(d.Escape) + "R" + string(d.Escape))
		case c == d.Escape:
			b.WriteString(string(d.Escape) + "E" + string(d.Escape))
		case d.Truncation != 0 && c == d.Truncation:
			b.WriteString(string(d.Escape) + "P" + string(d.Escape))
		case c < 0x20 || c == 0x7f:
			const digits = "0123456789ABCDEF"
			b.WriteString(string(d.Escape) + "X" + string(digits[c>>4]) + string(digits[c&15]) + string(d.Escape))
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}
