package fhir

import "strings"

// Records of the security model (organisations, users, care teams,
// consents) have ids that may hold '_' (and '.'), which a FHIR id may not:
// a FHIR id is [A-Za-z0-9.-]{1,64}. encodeID escapes '.' as ".0" and '_'
// as ".1", so ids without either are unchanged and the mapping is
// reversible; decodeID accepts only the canonical form, so every record
// has exactly one FHIR id.

// encodeID returns the FHIR id of a record id, false when it has none
// (another character, or longer than 64 once escaped).
func encodeID(id string) (string, bool) {
	if id == "" {
		return "", false
	}
	var b strings.Builder
	for i := 0; i < len(id); i++ {
		switch c := id[i]; {
		case c == '.':
			b.WriteString(".0")
		case c == '_':
			b.WriteString(".1")
		case c == '-' || (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'):
			b.WriteByte(c)
		default:
			return "", false
		}
	}
	out := b.String()
	return out, len(out) <= 64
}

// decodeID returns the record id of a FHIR id, false when it is not the
// canonical encoding of one.
func decodeID(fid string) (string, bool) {
	if !validID(fid) {
		return "", false
	}
	var b strings.Builder
	for i := 0; i < len(fid); i++ {
		c := fid[i]
		if c != '.' {
			b.WriteByte(c)
			continue
		}
		if i+1 >= len(fid) {
			return "", false
		}
		i++
		switch fid[i] {
		case '0':
			b.WriteByte('.')
		case '1':
			b.WriteByte('_')
		default:
			return "", false
		}
	}
	return b.String(), true
}

// encodable reports whether a record can be served: one whose id has no
// FHIR id is left out rather than rendered invalid.
func encodable(id string) bool {
	_, ok := encodeID(id)
	return ok
}
