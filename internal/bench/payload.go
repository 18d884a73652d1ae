package bench

import (
	"strconv"
	"time"
)

// vital is one simulated vital sign; prefix is the fixed part of its SenML
// record so that building a message only appends numbers.
type vital struct {
	prefix       string
	base, spread int64
}

var vitals = [...]vital{
	{`{"n":"8867-4","u":"/min","v":`, 60, 40}, // heart rate
	{`{"n":"59408-5","u":"%","v":`, 94, 6},    // SpO2
	{`{"n":"9279-1","u":"/min","v":`, 12, 9},  // respiratory rate
}

// generator builds SenML JSON messages for one device. Every record has an
// absolute time strictly later than the previous record of the same code, so
// no reading is a duplicate of another (the server deduplicates by device,
// code and time). Times follow the clock at millisecond resolution and run
// ahead of it only when one device sends more than 1000 readings/s of one
// code; lead records how far. Not safe for concurrent use.
type generator struct {
	perMessage int
	seq        int64
	last       [len(vitals)]int64 // last Unix ms used per vital
	lead       time.Duration
}

func newGenerator(perMessage int) *generator {
	return &generator{perMessage: perMessage}
}

// Append appends one message of perMessage records to dst.
func (g *generator) Append(dst []byte, now time.Time) []byte {
	// +1 ms so the first reading is never before the device's binding,
	// which was made at some earlier instant within the same millisecond.
	nowMs := now.UnixMilli() + 1
	dst = append(dst, '[')
	for j := 0; j < g.perMessage; j++ {
		if j > 0 {
			dst = append(dst, ',')
		}
		c := int(g.seq % int64(len(vitals)))
		v := &vitals[c]
		ms := max(nowMs, g.last[c]+1)
		g.last[c] = ms
		if d := time.Duration(ms-nowMs) * time.Millisecond; d > g.lead {
			g.lead = d
		}
		dst = append(dst, v.prefix...)
		// 7919 is coprime with every spread, so each vital cycles through its range.
		dst = strconv.AppendInt(dst, v.base+(g.seq/int64(len(vitals))*7919)%v.spread, 10)
		dst = append(dst, `,"t":`...)
		dst = appendMillis(dst, ms)
		dst = append(dst, '}')
		g.seq++
	}
	return append(dst, ']')
}

// appendMillis writes Unix milliseconds as SenML seconds with exactly three
// decimals, without going through float formatting.
func appendMillis(dst []byte, ms int64) []byte {
	dst = strconv.AppendInt(dst, ms/1000, 10)
	frac := ms % 1000
	dst = append(dst, '.', byte('0'+frac/100), byte('0'+frac/10%10), byte('0'+frac%10))
	return dst
}
