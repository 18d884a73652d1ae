package codes

import (
	"strconv"
	"strings"
)

// mdcDimPartition is the IEEE 11073-10101 partition of units (dimensions).
const mdcDimPartition = 4 << 16

// mdcUnits maps IEEE 11073-10101 unit terms (partition 4) to the UCUM unit
// Tend converts from; keyed by the term code within the partition, with
// the reference id alongside so both spellings of OBX-6 are understood.
var mdcUnits = []struct {
	term  int
	refID string
	ucum  string
}{
	{512, "MDC_DIM_DIMLESS", "1"},
	{544, "MDC_DIM_PERCENT", "%"},
	{1280, "MDC_DIM_X_M", "m"},
	{1297, "MDC_DIM_CENTI_M", "cm"},
	{1298, "MDC_DIM_MILLI_M", "mm"},
	{1376, "MDC_DIM_X_INCH", "[in_i]"},
	{1728, "MDC_DIM_X_G", "g"},
	{1731, "MDC_DIM_KILO_G", "kg"},
	{1760, "MDC_DIM_X_LB", "[lb_av]"},
	{1955, "MDC_DIM_KG_PER_M_SQ", "kg/m2"},
	{2130, "MDC_DIM_MILLI_G_PER_DL", "mg/dL"},
	{2194, "MDC_DIM_MILLI_SEC", "ms"},
	{2496, "MDC_DIM_HZ", "Hz"},
	{2528, "MDC_DIM_PER_MIN", "/min"},
	{2720, "MDC_DIM_BEAT_PER_MIN", "{beat}/min"},
	{2752, "MDC_DIM_PULS_PER_MIN", "/min"},
	{2784, "MDC_DIM_RESP_PER_MIN", "{breaths}/min"},
	{3072, "MDC_DIM_X_L_PER_MIN", "L/min"},
	{3840, "MDC_DIM_X_PASCAL", "Pa"},
	{3843, "MDC_DIM_KILO_PASCAL", "kPa"},
	{3872, "MDC_DIM_MMHG", "mm[Hg]"},
	{4384, "MDC_DIM_KELVIN", "K"},
	{4416, "MDC_DIM_FAHR", "[degF]"},
	{4722, "MDC_DIM_MILLI_MOLE_PER_L", "mmol/L"},
	{6048, "MDC_DIM_DEGC", "Cel"},
}

var mdcUnitByKey = map[string]string{}

// mdcSynonyms are MDC terms that measure what a table entry measures but
// are not its primary term, e.g. the pulse rate an NIBP cuff reports.
var mdcSynonyms = []struct {
	code  int
	refID string
	loinc string
}{
	{149546, "MDC_PULS_RATE_NON_INV", HeartRate},
	{147842, "MDC_ECG_CARD_BEAT_RATE", HeartRate}, // the 10101 name of 147842 before MDC_ECG_HEART_RATE
	{149514, "MDC_PULS_RATE", PulseRate},
}

var mdcSynonymByKey = map[string]string{}

func init() {
	for _, u := range mdcUnits {
		mdcUnitByKey[strconv.Itoa(mdcDimPartition+u.term)] = u.ucum
		mdcUnitByKey[strings.ToLower(u.refID)] = u.ucum
	}
	for _, s := range mdcSynonyms {
		mdcSynonymByKey[strconv.Itoa(s.code)] = s.loinc
		mdcSynonymByKey[strings.ToLower(s.refID)] = s.loinc
	}
}

// LookupMDC finds the code of an IEEE 11073-10101 term given by its numeric
// code ("150456") or reference id ("MDC_PULS_OXIM_SAT_O2"); either may be
// empty. The numeric code wins when both are given and known.
func LookupMDC(numeric, refID string) (Code, bool) {
	for _, k := range []string{strings.TrimSpace(numeric), strings.ToLower(strings.TrimSpace(refID))} {
		if k == "" {
			continue
		}
		if !strings.HasPrefix(k, "mdc_") {
			if _, err := strconv.Atoi(k); err != nil {
				continue // only numbers and MDC_ names, never aliases such as "hr"
			}
		}
		if c, ok := Lookup(k); ok {
			return c, true
		}
		if l, ok := mdcSynonymByKey[k]; ok {
			return ByLOINC(l)
		}
	}
	return Code{}, false
}

// MDCUnit returns the UCUM unit of an IEEE 11073-10101 unit term given by
// numeric code ("266016") or reference id ("MDC_DIM_MMHG").
func MDCUnit(numeric, refID string) (string, bool) {
	for _, k := range []string{strings.TrimSpace(numeric), strings.ToLower(strings.TrimSpace(refID))} {
		if u, ok := mdcUnitByKey[k]; ok && k != "" {
			return u, true
		}
	}
	return "", false
}
