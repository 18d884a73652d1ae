package gatt

import (
	"fmt"
	"math"
	"strconv"
	"testing"
)

// TestSFloatExhaustive checks all 65,536 SFLOAT values against the decimal
// they spell, parsed by strconv (correctly rounded), and the five special
// values against the standard.
func TestSFloatExhaustive(t *testing.T) {
	specials := map[uint16]string{0x07FF: "NaN", 0x0800: "NRes", 0x07FE: "+INF", 0x0802: "-INF", 0x0801: "Reserved"}
	for raw := 0; raw <= 0xFFFF; raw++ {
		n := SFloat(uint16(raw))
		if want, ok := specials[uint16(raw)]; ok {
			if n.OK() || n.Special.String() != want || n.Value != 0 {
				t.Fatalf("%#04x: %+v, want %s", raw, n, want)
			}
			continue
		}
		exp := raw >> 12
		if exp >= 8 {
			exp -= 16
		}
		mant := raw & 0x0FFF
		if mant >= 0x800 {
			mant -= 0x1000
		}
		want, _ := strconv.ParseFloat(fmt.Sprintf("%de%d", mant, exp), 64)
		if !n.OK() || n.Value != want {
			t.Fatalf("%#04x: %+v, want %v", raw, n, want)
		}
	}
}

// TestFloat checks FLOAT across its exponent range and mantissa edges.
func TestFloat(t *testing.T) {
	specials := map[uint32]Special{0x007FFFFF: NaN, 0x00800000: NRes, 0x007FFFFE: PosInf, 0x00800002: NegInf, 0x00800001: Reserved}
	for raw, want := range specials {
		if n := Float(raw); n.Special != want || n.Value != 0 {
			t.Errorf("%#08x: %+v, want %s", raw, n, want)
		}
	}
	for exp := -128; exp <= 127; exp++ {
		for _, mant := range []int{0, 1, -1, 2, 986, -1234, 0x7FFFFD, -0x7FFFFD, 0x7FFFFF, -0x800000} {
			raw := uint32(int32(exp))<<24 | uint32(int32(mant))&0x00FFFFFF
			n := Float(raw)
			if _, special := specials[raw]; special {
				continue
			}
			want, _ := strconv.ParseFloat(fmt.Sprintf("%de%d", mant, exp), 64)
			if !n.OK() || math.Abs(n.Value-want) > math.Abs(want)*1e-15 {
				t.Fatalf("exp %d mant %d (%#08x): %+v, want %v", exp, mant, raw, n, want)
			}
		}
	}
	// Special mantissas with a non-zero exponent are ordinary numbers.
	if n := Float(0x017FFFFF); !n.OK() || n.Value != 83886070 {
		t.Errorf("0x017fffff: %+v", n)
	}
	if n := SFloat(0x17FF); !n.OK() || n.Value != 20470 {
		t.Errorf("0x17ff: %+v", n)
	}
}
