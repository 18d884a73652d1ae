package codes

import "testing"

func TestLookupMDC(t *testing.T) {
	cases := []struct {
		numeric, ref, want string
		ok                 bool
	}{
		{"150456", "MDC_PULS_OXIM_SAT_O2", OxygenSaturation, true},
		{"", "mdc_resp_rate", RespiratoryRate, true},
		{"149546", "MDC_PULS_RATE_NON_INV", HeartRate, true},
		{"147842", "MDC_ECG_CARD_BEAT_RATE", HeartRate, true},
		{"", "MDC_ECG_CARD_BEAT_RATE", HeartRate, true},
		{"150021", "", SystolicBP, true},
		{"147232", "MDC_ECG_TIME_PD_QT_GL", "", false},
		{"", "hr", "", false}, // aliases are not MDC terms
		{"", "", "", false},
	}
	for _, c := range cases {
		got, ok := LookupMDC(c.numeric, c.ref)
		if ok != c.ok || got.LOINC != c.want {
			t.Errorf("LookupMDC(%q, %q) = %s, %v; want %s, %v", c.numeric, c.ref, got.LOINC, ok, c.want, c.ok)
		}
	}
}

func TestMDCUnit(t *testing.T) {
	cases := []struct{ numeric, ref, want string }{
		{"266016", "MDC_DIM_MMHG", "mm[Hg]"},
		{"264864", "", "{beat}/min"},
		{"", "MDC_DIM_PERCENT", "%"},
		{"268192", "", "Cel"},
		{"999", "MDC_DIM_NOPE", ""},
	}
	for _, c := range cases {
		if got, _ := MDCUnit(c.numeric, c.ref); got != c.want {
			t.Errorf("MDCUnit(%q, %q) = %q, want %q", c.numeric, c.ref, got, c.want)
		}
	}
	// Every mapped unit converts for at least one code, or is a unit Tend
	// knows only for display (ms, Hz ratios): no typo reaches Convert.
	for _, u := range mdcUnits {
		found := u.ucum == "ms" || u.ucum == "1"
		for _, units := range dimensions {
			if _, ok := units[u.ucum]; ok {
				found = true
			}
		}
		if !found {
			t.Errorf("%s maps to %q, which no code accepts", u.refID, u.ucum)
		}
	}
}
