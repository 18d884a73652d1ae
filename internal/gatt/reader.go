package gatt

import (
	"encoding/binary"
	"fmt"
	"time"
)

// reader walks a characteristic value field by field. The first short read
// sets err and every later read returns zero, so decoders read all fields
// and check err once, naming the first field that was missing.
type reader struct {
	b   []byte
	off int
	err error
}

func (r *reader) take(n int, field string) []byte {
	if r.err != nil {
		return nil
	}
	if len(r.b)-r.off < n {
		r.err = fmt.Errorf("value ends before %s (needs %d more bytes at offset %d, has %d)", field, n, r.off, len(r.b)-r.off)
		return nil
	}
	p := r.b[r.off : r.off+n]
	r.off += n
	return p
}

func (r *reader) u8(field string) uint8 {
	if p := r.take(1, field); p != nil {
		return p[0]
	}
	return 0
}

func (r *reader) u16(field string) uint16 {
	if p := r.take(2, field); p != nil {
		return binary.LittleEndian.Uint16(p)
	}
	return 0
}

func (r *reader) u24(field string) uint32 {
	if p := r.take(3, field); p != nil {
		return uint32(p[0]) | uint32(p[1])<<8 | uint32(p[2])<<16
	}
	return 0
}

func (r *reader) sfloat(field string) Number {
	if p := r.take(2, field); p != nil {
		return SFloat(binary.LittleEndian.Uint16(p))
	}
	return Number{Special: NaN}
}

func (r *reader) float(field string) Number {
	if p := r.take(4, field); p != nil {
		return Float(binary.LittleEndian.Uint32(p))
	}
	return Number{Special: NaN}
}

func (r *reader) dateTime(field string) DateTime {
	p := r.take(7, field)
	if p == nil {
		return DateTime{}
	}
	d := DateTime{Year: binary.LittleEndian.Uint16(p), Month: p[2], Day: p[3], Hours: p[4], Minutes: p[5], Seconds: p[6]}
	if r.err == nil {
		if err := d.check(); err != nil {
			r.err = fmt.Errorf("%s: %w", field, err)
		}
	}
	return d
}

// end reports an error if bytes remain that the flags do not account for:
// a value longer than its flags say is corrupt or misread, and guessing
// which part to trust would be worse than refusing it.
func (r *reader) end() error {
	if r.err != nil {
		return r.err
	}
	if r.off != len(r.b) {
		return fmt.Errorf("%d bytes left over after the last field the flags announce", len(r.b)-r.off)
	}
	return nil
}

// DateTime is the Bluetooth Date Time characteristic (0x2A08) embedded in
// measurements: the device's local wall-clock time, with 0 meaning "not
// known" for year, month and day.
type DateTime struct {
	Year                    uint16 // 1582–9999, 0 = not known
	Month, Day              uint8  // 1–12 and 1–31, 0 = not known
	Hours, Minutes, Seconds uint8
}

func (d DateTime) check() error {
	switch {
	case d.Year != 0 && (d.Year < 1582 || d.Year > 9999):
		return fmt.Errorf("year %d is outside 1582–9999", d.Year)
	case d.Month > 12:
		return fmt.Errorf("month %d is not valid", d.Month)
	case d.Day > 31:
		return fmt.Errorf("day %d is not valid", d.Day)
	case d.Hours > 23 || d.Minutes > 59 || d.Seconds > 59:
		return fmt.Errorf("time of day %02d:%02d:%02d is not valid", d.Hours, d.Minutes, d.Seconds)
	}
	return nil
}

// Known reports whether the date is complete enough to place a reading.
func (d DateTime) Known() bool { return d.Year != 0 && d.Month != 0 && d.Day != 0 }

// In returns the instant d names in the device's zone (UTC when loc is
// nil). A day beyond the month's end (31 April) is refused rather than
// rolled into the next month.
func (d DateTime) In(loc *time.Location) (time.Time, error) {
	if loc == nil {
		loc = time.UTC
	}
	if !d.Known() {
		return time.Time{}, fmt.Errorf("device time has year, month or day not set")
	}
	t := time.Date(int(d.Year), time.Month(d.Month), int(d.Day), int(d.Hours), int(d.Minutes), int(d.Seconds), 0, loc)
	if t.Day() != int(d.Day) {
		return time.Time{}, fmt.Errorf("device date %04d-%02d-%02d does not exist", d.Year, d.Month, d.Day)
	}
	return t, nil
}

// String writes d as ISO 8601 local time, with 0 for unknown parts.
func (d DateTime) String() string {
	return fmt.Sprintf("%04d-%02d-%02dT%02d:%02d:%02d", d.Year, d.Month, d.Day, d.Hours, d.Minutes, d.Seconds)
}
