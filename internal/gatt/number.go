package gatt

import (
	"encoding/binary"
	"math"
	"strconv"
)

// Special tells why an IEEE 11073-20601 number carries no value.
type Special uint8

// The special values of SFLOAT and FLOAT (IEEE 11073-20601 §F.8). Each is
// one reserved mantissa with exponent 0; the device uses them to say that it
// has no number, and Tend must not invent one.
const (
	Finite   Special = iota // an ordinary number
	NaN                     // not a number: the device could not measure
	NRes                    // not at this resolution: too fine to encode
	PosInf                  // above the measurable range
	NegInf                  // below the measurable range
	Reserved                // reserved for future use by the standard
)

// String names the special value as the standard does.
func (s Special) String() string {
	switch s {
	case Finite:
		return "finite"
	case NaN:
		return "NaN"
	case NRes:
		return "NRes"
	case PosInf:
		return "+INF"
	case NegInf:
		return "-INF"
	case Reserved:
		return "Reserved"
	}
	return "Special(" + strconv.Itoa(int(s)) + ")"
}

// Reason explains the special value to a person reading a dead letter.
func (s Special) Reason() string {
	switch s {
	case NaN:
		return "NaN (the device has no valid value)"
	case NRes:
		return "NRes (not representable at this resolution)"
	case PosInf:
		return "+INF (above the device's measurable range)"
	case NegInf:
		return "-INF (below the device's measurable range)"
	case Reserved:
		return "a value reserved by IEEE 11073-20601"
	}
	return "a number"
}

// Number is a decoded SFLOAT or FLOAT: a value, or a Special that says why
// there is none. Value is 0 whenever Special is not Finite.
type Number struct {
	Value   float64
	Special Special
}

// OK reports whether n carries a number.
func (n Number) OK() bool { return n.Special == Finite }

func finite(v float64) Number { return Number{Value: v} }

// SFLOAT special values: exponent 0, mantissa 0x07FF..0x0802.
var sfloatSpecial = map[uint16]Special{0x07FF: NaN, 0x0800: NRes, 0x07FE: PosInf, 0x0802: NegInf, 0x0801: Reserved}

// FLOAT special values: exponent 0, mantissa 0x007FFFFF..0x00800002.
var floatSpecial = map[uint32]Special{0x007FFFFF: NaN, 0x00800000: NRes, 0x007FFFFE: PosInf, 0x00800002: NegInf, 0x00800001: Reserved}

// SFloat decodes a 16-bit SFLOAT given as its integer value: a 4-bit signed
// exponent above a 12-bit signed mantissa, value = mantissa × 10^exponent.
func SFloat(raw uint16) Number {
	if s, ok := sfloatSpecial[raw]; ok {
		return Number{Special: s}
	}
	exp := int(int16(raw) >> 12)    // arithmetic shift keeps the sign
	mant := int(int16(raw<<4) >> 4) // sign-extend the low 12 bits
	return finite(scale10(int64(mant), exp))
}

// Float decodes a 32-bit FLOAT given as its integer value: an 8-bit signed
// exponent above a 24-bit signed mantissa.
func Float(raw uint32) Number {
	if s, ok := floatSpecial[raw]; ok {
		return Number{Special: s}
	}
	exp := int(int8(raw >> 24))
	mant := int(int32(raw<<8) >> 8)
	return finite(scale10(int64(mant), exp))
}

// SFloatBytes decodes an SFLOAT as it travels on the air (little-endian).
func SFloatBytes(b [2]byte) Number { return SFloat(binary.LittleEndian.Uint16(b[:])) }

// FloatBytes decodes a FLOAT as it travels on the air (little-endian).
func FloatBytes(b [4]byte) Number { return Float(binary.LittleEndian.Uint32(b[:])) }

// scale10 returns m × 10^e. A negative exponent divides by an exact power of
// ten so that 3760 × 10^-2 comes out as the double nearest 37.6, not 37.60000000000001.
func scale10(m int64, e int) float64 {
	if e >= 0 {
		return float64(m) * math.Pow10(e)
	}
	return float64(m) / math.Pow10(-e)
}
