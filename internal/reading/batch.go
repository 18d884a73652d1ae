package reading

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"
)

// BatchVersion is the first byte of every encoded batch. A decoder that sees
// another version refuses the message rather than guessing, so a rolling
// upgrade can never silently misread readings.
const BatchVersion byte = 1

// Batch layout (version 1), all integers as (u)varints:
//
//	version byte
//	count uvarint
//	count × reading:
//	  patient, device, code, mdc, unit, source: uvarint length + bytes
//	  flags byte: 1 = HasValue, 2 = Time set, 4 = Received set
//	  [value: 8 bytes little-endian IEEE 754, when HasValue]
//	  [time: varint unix nanoseconds, when set]
//	  [received: varint unix nanoseconds, when set]
//	  components uvarint, each: code, mdc, unit strings + 8-byte value
//
// Times are decoded in UTC; a zero time stays the zero time. Times outside the
// int64 nanosecond range (years before 1678 or after 2262) cannot be encoded
// faithfully and are clamped by time.UnixNano; no clinical reading has them.
const (
	flagHasValue = 1 << iota
	flagTime
	flagReceived
	flagsKnown = flagHasValue | flagTime | flagReceived
)

// Smallest possible encodings, used to bound allocations from untrusted counts.
const (
	minReadingSize   = 6 + 1 + 1 // six empty strings, flags, component count
	minComponentSize = 3 + 8     // three empty strings, value
)

// ErrBatch is wrapped by every DecodeBatch error.
var ErrBatch = errors.New("invalid reading batch")

// EncodeBatch encodes rs into the stream message body. It never fails; use
// Reading.Valid before encoding to keep non-finite values out.
func EncodeBatch(rs []Reading) []byte {
	size := 1 + binary.MaxVarintLen64
	for i := range rs {
		size += encodedSize(&rs[i])
	}
	b := make([]byte, 0, size)
	b = append(b, BatchVersion)
	b = binary.AppendUvarint(b, uint64(len(rs)))
	for i := range rs {
		b = appendReading(b, &rs[i])
	}
	return b
}

func encodedSize(r *Reading) int {
	n := 6*binary.MaxVarintLen64 + len(r.Patient) + len(r.Device) + len(r.Code) + len(r.MDC) + len(r.Unit) + len(r.Source)
	n += 1 + 8 + 2*binary.MaxVarintLen64 + binary.MaxVarintLen64
	for _, c := range r.Components {
		n += 3*binary.MaxVarintLen64 + len(c.Code) + len(c.MDC) + len(c.Unit) + 8
	}
	return n
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendReading(b []byte, r *Reading) []byte {
	b = appendString(b, r.Patient)
	b = appendString(b, r.Device)
	b = appendString(b, r.Code)
	b = appendString(b, r.MDC)
	b = appendString(b, r.Unit)
	b = appendString(b, r.Source)
	var flags byte
	if r.HasValue {
		flags |= flagHasValue
	}
	if !r.Time.IsZero() {
		flags |= flagTime
	}
	if !r.Received.IsZero() {
		flags |= flagReceived
	}
	b = append(b, flags)
	if r.HasValue {
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(r.Value))
	}
	if flags&flagTime != 0 {
		b = binary.AppendVarint(b, r.Time.UnixNano())
	}
	if flags&flagReceived != 0 {
		b = binary.AppendVarint(b, r.Received.UnixNano())
	}
	b = binary.AppendUvarint(b, uint64(len(r.Components)))
	for _, c := range r.Components {
		b = appendString(b, c.Code)
		b = appendString(b, c.MDC)
		b = appendString(b, c.Unit)
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(c.Value))
	}
	return b
}

// DecodeBatch decodes a message body written by EncodeBatch. It rejects
// unknown versions, truncated or trailing data, and non-finite values (NaN is
// never stored). Allocations are bounded by len(b).
func DecodeBatch(b []byte) ([]Reading, error) {
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: empty", ErrBatch)
	}
	if b[0] != BatchVersion {
		return nil, fmt.Errorf("%w: unsupported version %d", ErrBatch, b[0])
	}
	d := decoder{b: b[1:]}
	count := d.uvarint()
	if d.err == nil && count > uint64(len(d.b)/minReadingSize) {
		return nil, fmt.Errorf("%w: count %d exceeds message size", ErrBatch, count)
	}
	if d.err != nil {
		return nil, d.err
	}
	rs := make([]Reading, count)
	for i := range rs {
		d.reading(&rs[i])
		if d.err != nil {
			return nil, fmt.Errorf("reading %d: %w", i, d.err)
		}
	}
	if len(d.b) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", ErrBatch, len(d.b))
	}
	return rs, nil
}

// decoder keeps the first error so the field-by-field code stays linear.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: truncated or malformed %s", ErrBatch, what)
	}
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("uvarint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail("varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) string() string {
	n := d.uvarint()
	if d.err != nil {
		return ""
	}
	if n > uint64(len(d.b)) {
		d.fail("string")
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

func (d *decoder) byte() byte {
	if d.err != nil {
		return 0
	}
	if len(d.b) < 1 {
		d.fail("flags")
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *decoder) float() float64 {
	if d.err != nil {
		return 0
	}
	if len(d.b) < 8 {
		d.fail("value")
		return 0
	}
	v := math.Float64frombits(binary.LittleEndian.Uint64(d.b))
	d.b = d.b[8:]
	if math.IsNaN(v) || math.IsInf(v, 0) {
		d.err = fmt.Errorf("%w: non-finite value", ErrBatch)
		return 0
	}
	return v
}

func (d *decoder) reading(r *Reading) {
	r.Patient = d.string()
	r.Device = d.string()
	r.Code = d.string()
	r.MDC = d.string()
	r.Unit = d.string()
	r.Source = d.string()
	flags := d.byte()
	if d.err == nil && flags&^flagsKnown != 0 {
		d.err = fmt.Errorf("%w: unknown flags %#x", ErrBatch, flags)
		return
	}
	if flags&flagHasValue != 0 {
		r.HasValue = true
		r.Value = d.float()
	}
	if flags&flagTime != 0 {
		r.Time = time.Unix(0, d.varint()).UTC()
	}
	if flags&flagReceived != 0 {
		r.Received = time.Unix(0, d.varint()).UTC()
	}
	n := d.uvarint()
	if d.err != nil {
		return
	}
	if n > uint64(len(d.b)/minComponentSize) {
		d.err = fmt.Errorf("%w: component count %d exceeds message size", ErrBatch, n)
		return
	}
	if n == 0 {
		return
	}
	r.Components = make([]Component, n)
	for i := range r.Components {
		c := &r.Components[i]
		c.Code = d.string()
		c.MDC = d.string()
		c.Unit = d.string()
		c.Value = d.float()
	}
}
