package store

import "testing"

func TestValidDeviceID(t *testing.T) {
	for _, tc := range []struct {
		id   string
		want bool
	}{
		{"bp-cuff_0042", true},
		{"hl7-0123456789abcdef", true},
		{"A", true},
		{"", false},
		{"+", false},
		{"#", false},
		{"dev/1", false},
		{"dev.1", false},
		{"dev*", false},
		{"dev>", false},
		{"dev 1", false},
		{"dev\x00", false},
		{"dév", false},
		{string(make([]byte, 65)), false},
		{"0123456789012345678901234567890123456789012345678901234567890123", true},
	} {
		if got := ValidDeviceID(tc.id); got != tc.want {
			t.Errorf("ValidDeviceID(%q) = %v, want %v", tc.id, got, tc.want)
		}
	}
}
