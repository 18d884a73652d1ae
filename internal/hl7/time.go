package hl7

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ParseTime parses an HL7 DTM (or TS/DT) value:
// YYYY[MM[DD[HH[MM[SS[.S[S[S[S]]]]]]]]][+/-ZZZZ]. A value without an offset
// is read in loc (the caller decides: the sender's zone from MSH-7, or UTC).
// Missing parts take their lowest value, as the standard says.
func ParseTime(s string, loc *time.Location) (time.Time, error) {
	orig := s
	if loc == nil {
		loc = time.UTC
	}
	if i := strings.IndexAny(s, "+-"); i >= 0 {
		z := s[i:]
		s = s[:i]
		if len(z) != 5 || !allDigits(z[1:]) {
			return time.Time{}, fmt.Errorf("time %q has an invalid zone offset (want +HHMM or -HHMM)", clip(orig, 40))
		}
		h, _ := strconv.Atoi(z[1:3])
		m, _ := strconv.Atoi(z[3:5])
		if h > 14 || m > 59 {
			return time.Time{}, fmt.Errorf("time %q has an invalid zone offset", clip(orig, 40))
		}
		off := h*3600 + m*60
		if z[0] == '-' {
			off = -off
		}
		loc = time.FixedZone("", off)
	}
	frac := ""
	if i := strings.IndexByte(s, '.'); i >= 0 {
		s, frac = s[:i], s[i+1:]
		if len(s) != 14 || frac == "" || len(frac) > 9 || !allDigits(frac) {
			return time.Time{}, fmt.Errorf("time %q has an invalid fraction of a second", clip(orig, 40))
		}
	}
	if !allDigits(s) || len(s) < 4 || len(s) > 14 || len(s)%2 != 0 {
		return time.Time{}, fmt.Errorf("time %q is not an HL7 date/time (YYYYMMDDHHMMSS[.S][+ZZZZ])", clip(orig, 40))
	}
	num := func(i, def int) int {
		if len(s) < i+2 {
			return def
		}
		v, _ := strconv.Atoi(s[i : i+2])
		return v
	}
	year, _ := strconv.Atoi(s[:4])
	mon, day, hour, min, sec := num(4, 1), num(6, 1), num(8, 0), num(10, 0), num(12, 0)
	if mon < 1 || mon > 12 || day < 1 || day > 31 || hour > 23 || min > 59 || sec > 59 {
		return time.Time{}, fmt.Errorf("time %q is not a valid date/time", clip(orig, 40))
	}
	ns := 0
	if frac != "" {
		ns, _ = strconv.Atoi((frac + "000000000")[:9])
	}
	t := time.Date(year, time.Month(mon), day, hour, min, sec, ns, loc)
	if t.Day() != day {
		return time.Time{}, fmt.Errorf("time %q is not a valid date", clip(orig, 40))
	}
	return t, nil
}

// ZoneOf returns the zone offset a DTM value declares, or nil when it has
// none.
func ZoneOf(s string) *time.Location {
	if i := strings.IndexAny(s, "+-"); i >= 0 {
		if t, err := ParseTime(s, time.UTC); err == nil {
			return t.Location()
		}
	}
	return nil
}

// FormatTime formats t as an HL7 DTM with seconds and its zone offset.
func FormatTime(t time.Time) string { return t.Format("20060102150405-0700") }

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}
