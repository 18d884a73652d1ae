package gatt

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tendhealth/tend/internal/codes"
	"github.com/tendhealth/tend/internal/senml"
)

var now = time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)

// rec is a measurement written compactly for the table: code=value@offset
// from now, panels as code=sys/dia[/mean].
func render(ms []senml.Measurement) string {
	parts := make([]string, len(ms))
	for i, m := range ms {
		v := fmt.Sprint(m.Value)
		if len(m.Components) > 0 {
			vs := make([]string, len(m.Components))
			for j, c := range m.Components {
				vs[j] = fmt.Sprint(c.Value)
			}
			v = strings.Join(vs, "/")
		}
		parts[i] = fmt.Sprintf("%s=%s@%s", m.Code, v, m.Time.Sub(now))
	}
	return strings.Join(parts, " ")
}

func TestDecode(t *testing.T) {
	t1 := float64(now.Add(-time.Minute).Unix())
	tests := []struct {
		name    string
		payload string
		want    string // rendered measurements
		absent  string // substring of the joined absent reasons; "" = none
	}{
		{"heart rate uint8, contact not supported", `{"uuid":"2A37","hex":"0048"}`,
			"8867-4=72@0s", ""},
		{"heart rate with contact", fmt.Sprintf(`{"uuid":"2A37","hex":"0648","t":%g}`, t1),
			"sensor-off=0@-1m0s 8867-4=72@-1m0s", ""},
		{"heart rate without contact", `{"uuid":"2A37","hex":"0448"}`,
			"sensor-off=1@0s", "no skin contact"},
		{"BP mmHg, device time in +01:00", `{"uuid":"2A35","hex":"1e 7800 5000 5d00 ea070b17091e00 4800 01 2700","tz":"+01:00"}`,
			"85354-9=120/80/93@-30m0s 8867-4=72@-30m0s body-movement=1@-30m0s cuff-loose=1@-30m0s irregular-pulse=1@-30m0s improper-position=1@-30m0s", ""},
		{"BP in kPa converts to mmHg", `{"uuid":"0x2a35","hex":"01 a0f0 6af0 ff07"}`, // 16.0 and 10.6 kPa, mean NaN
			"85354-9=120.00992/79.506572@0s", "mean arterial pressure is NaN"},
		{"BP systolic NRes leaves the panel out", `{"uuid":"2A35","hex":"04 0008 5000 5d00 4800"}`,
			"8867-4=72@0s", "systolic is NRes"},
		{"BP year not set uses t", fmt.Sprintf(`{"uuid":"2A35","hex":"02 7800 5000 5d00 00000b17091e00","t":%g}`, t1),
			"85354-9=120/80/93@-1m0s", ""},
		{"intermediate cuff pressure stores nothing", `{"uuid":"2A36","hex":"00 9600 ff07 ff07"}`, "", ""},
		{"temperature Fahrenheit", `{"uuid":"2A1C","hex":"01 da0300ff"}`, "8310-5=37@0s", ""},
		{"temperature +INF", `{"uuid":"2A1C","hex":"00 feff7f00"}`, "", "+INF"},
		{"temperature -INF", `{"uuid":"2A1C","hex":"00 02008000"}`, "", "-INF"},
		{"temperature reserved", `{"uuid":"2A1C","hex":"00 01008000"}`, "", "reserved"},
		{"glucose kg/L with offset", `{"uuid":"2A18","hex":"03 0100 ea070b170900 00 f6ff 5ab0 f1"}`,
			"41653-7=90@-10m0s", ""},
		{"glucose mol/L", `{"uuid":"2A18","hex":"06 0200 ea070b170900 00 37c0 f1"}`, // 5.5 mmol/L = 55 × 10^-4 mol/L
			"41653-7=99.1001@0s", ""},
		{"glucose ISF is interstitial", `{"uuid":"2A18","hex":"02 0300 ea070b170900 00 5ab0 f9"}`,
			"99504-3=90@0s", ""},
		{"glucose control solution", `{"uuid":"2A18","hex":"02 0400 ea070b170900 00 5ab0 fa"}`, "", "control solution"},
		{"glucose strip error", `{"uuid":"2A18","hex":"0a 0500 ea070b170900 00 5ab0 f1 0800"}`,
			"device-fault=1@0s", "strip or device fault"},
		{"glucose below device range keeps the value", `{"uuid":"2A18","hex":"0a 0600 ea070b170900 00 14b0 f1 4000"}`,
			"41653-7=20@0s", ""},
		{"glucose with HbA1c context, reordered", `[{"uuid":"2A34","hex":"40 0700 41f0"},{"uuid":"2A18","hex":"12 0700 ea070b170900 00 5ab0 f1"}]`,
			"41653-7=90@0s 4548-4=6.5@0s", ""},
		{"PLX spot check with time", `{"uuid":"2A5E","hex":"01 6100 4000 ea070b17083b00"}`,
			"59408-5=97@-1m0s 8889-8=64@-1m0s", ""},
		{"PLX spot check clock not set", `{"uuid":"2A5E","hex":"11 6100 4000 ea070b17083b00"}`,
			"59408-5=97@0s 8889-8=64@0s", ""},
		{"PLX sensor displaced", `{"uuid":"2A5F","hex":"08 6100 4000 002000"}`,
			"sensor-off=1@0s", "displaced"},
		{"PLX sensor connected", `{"uuid":"2A5F","hex":"09 6100 4000 6000 4100 200000"}`,
			"sensor-off=0@0s 59408-5=97@0s 8889-8=64@0s", ""},
		{"PLX invalid measurement", `{"uuid":"2A5F","hex":"04 6100 4000 0080"}`, "", "invalid"},
		{"PLX demonstration data", `{"uuid":"2A5E","hex":"02 6100 4000 0004"}`, "", "demonstration"},
		{"PLX sensor malfunction", `{"uuid":"2A5F","hex":"08 6100 4000 004000"}`,
			"sensor-off=0@0s device-fault=1@0s", "sensor fault"},
		{"PLX SpO2 NaN, pulse kept", `{"uuid":"2A5F","hex":"00 ff07 4000"}`, "8889-8=64@0s", "SpO2: NaN"},
		{"weight SI with BMI and height", `{"uuid":"2A9D","hex":"08 b036 e500 d606"}`,
			"29463-7=70@0s 39156-5=22.9@0s 8302-2=175@0s", ""},
		{"weight imperial", `{"uuid":"2A9D","hex":"09 983a e500 d602"}`,
			"29463-7=68.038856@0s 39156-5=22.9@0s 8302-2=184.404@0s", ""},
		{"weight unsuccessful", `{"uuid":"2A9D","hex":"00 ffff"}`, "", "unsuccessful"},
		{"body composition", `{"uuid":"2A9C","hex":"000c d700 b036 d606"}`,
			"41982-0=21.5@0s 29463-7=70@0s 8302-2=175@0s", ""},
		{"body composition unsuccessful", `{"uuid":"2A9C","hex":"0000 ffff"}`, "", "unsuccessful"},
		{"CGM two records, no session start", `{"uuid":"2AA7","hex":"06 00 6e00 0a00 06 00 7800 0f00"}`,
			"99504-3=110@-5m0s 99504-3=120@0s", ""},
		{"CGM with session start", fmt.Sprintf(`{"uuid":"2AA7","hex":"06 00 6e00 0a00","session_start":"%s"}`, now.Add(-time.Hour).Format(time.RFC3339)),
			"99504-3=110@-50m0s", ""},
		{"CGM sensor malfunction", `{"uuid":"2AA7","hex":"07 80 6e00 0a00 08"}`, "device-fault=1@0s", "sensor/device fault"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, err := Decode([]byte(tc.payload), now, senml.DefaultLimits)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if got := render(res.Measurements); got != tc.want {
				t.Errorf("measurements\n got %s\nwant %s", got, tc.want)
			}
			absent := strings.Join(res.Absent, "; ")
			if (tc.absent == "") != (absent == "") || !strings.Contains(strings.ToLower(absent), strings.ToLower(tc.absent)) {
				t.Errorf("absent %q, want %q", absent, tc.absent)
			}
			for _, m := range res.Measurements {
				c, ok := codes.ByLOINC(m.Code)
				if !ok || m.Unit != c.Unit || (m.HasValue == (len(m.Components) > 0)) {
					t.Errorf("measurement %+v does not follow the code table", m)
				}
			}
		})
	}
}

func TestDecodeErrors(t *testing.T) {
	future := float64(now.Add(time.Hour).Unix())
	tests := []struct{ name, payload, want string }{
		{"empty", ``, "empty"},
		{"not JSON", `hello`, "JSON object"},
		{"broken JSON", `[{"uuid":"2A37",`, "ends too early"},
		{"JSON syntax", `[{"uuid":"2A37",}]`, "syntax error"},
		{"item not an object", `[{"uuid":"2A37","hex":"0048"}, 7]`, "item 1: not a valid item: an item must be a JSON object"},
		{"wrong type", `{"uuid":2,"hex":"0048"}`, "field \"uuid\" has the wrong type"},
		{"data after the envelope", `{"uuid":"2A37","hex":"0048"} {}`, "data after its end"},
		{"no items", `[]`, "no items"},
		{"unknown field", `{"uuid":"2A37","hexa":"0048"}`, "not a valid item"},
		{"hex and base64", `{"uuid":"2A37","hex":"0048","base64":"AEg="}`, "both"},
		{"no value", `{"uuid":"2A37"}`, "no value"},
		{"bad hex", `{"uuid":"2A37","hex":"0g"}`, "hexadecimal"},
		{"bad base64", `{"uuid":"2A37","base64":"*"}`, "base64"},
		{"bad uuid", `{"uuid":"heart","hex":"0048"}`, "not a Bluetooth UUID"},
		{"other base uuid", `{"uuid":"00002a37-0000-1000-8000-000000000000","hex":"0048"}`, "not a Bluetooth UUID"},
		{"unsupported", `{"uuid":"2A19","hex":"64"}`, "not supported"},
		{"bad tz", `{"uuid":"2A37","hex":"0048","tz":"CET"}`, "UTC offset"},
		{"tz out of range", `{"uuid":"2A37","hex":"0048","tz":"+15:00"}`, "outside"},
		{"bad t", `{"uuid":"2A37","hex":"0048","t":"yesterday"}`, "RFC 3339"},
		{"t in the future", fmt.Sprintf(`{"uuid":"2A37","hex":"0048","t":%g}`, future), "in the future"},
		{"device clock in 2000", `{"uuid":"2A35","hex":"02 7800 5000 5d00 d0070101000000"}`, "in the past"},
		{"31 April", `{"uuid":"2A35","hex":"02 7800 5000 5d00 ea07041f000000"}`, "does not exist"},
		{"truncated", `{"uuid":"2A35","hex":"00 7800"}`, "value ends before diastolic"},
		{"trailing bytes", `{"uuid":"2A37","hex":"004800"}`, "left over"},
		{"out of range", `{"uuid":"2A37","hex":"01 ff01"}`, "outside the possible range"},
		{"duplicate reading", `[{"uuid":"2A37","hex":"0048"},{"uuid":"2A37","hex":"0049"}]`, "item 1: repeats 8867-4"},
		{"CGM CRC wrong", `{"uuid":"2AA7","hex":"08 00 6e00 0a00 0000"}`, "E2E-CRC"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decode([]byte(tc.payload), now, senml.DefaultLimits)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to contain %q", err, tc.want)
			}
		})
	}
	lim := senml.DefaultLimits
	lim.MaxRecords = 2
	if _, err := Decode([]byte(`[{"uuid":"2A37","hex":"0048"},{"uuid":"2A37","hex":"0048"},{"uuid":"2A37","hex":"0048"}]`), now, lim); err == nil || !strings.Contains(err.Error(), "more than 2 items") {
		t.Fatalf("item limit: %v", err)
	}
}

func TestSniff(t *testing.T) {
	for in, want := range map[string]bool{
		`{"uuid":"2A37"}`:                    true,
		`[{"t":1,"uuid":"2A37"}]`:            true,
		`[{"n":"8867-4","v":60}]`:            false,
		`{"bn":"uuid","n":"hr","v":1}`:       false,
		`[{"x":{"uuid":1}},{"uuid":"2A37"}]`: false,
		`[`:                                  false,
		"\x81\xa0":                           false,
	} {
		if got := Sniff([]byte(in)); got != want {
			t.Errorf("Sniff(%s) = %v, want %v", in, got, want)
		}
	}
}
