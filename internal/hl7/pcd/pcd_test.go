package pcd

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tendhealth/tend/internal/hl7"
)

var now = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

const sharedDir = "../../../../shared/testdata/hl7"

// TestSharedExamples maps every example file, with each of the three
// segment endings, and compares with a golden file that lists each stored
// reading with its code, unit, time and equipment.
func TestSharedExamples(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(sharedDir, "*.hl7"))
	if err != nil || len(files) == 0 {
		t.Skipf("no shared HL7 examples at %s", sharedDir)
	}
	for _, path := range files {
		name := strings.TrimSuffix(filepath.Base(path), ".hl7")
		t.Run(name, func(t *testing.T) {
			raw, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			var first []byte
			for _, sep := range []string{"\r", "\r\n", "\n"} {
				msg := bytes.ReplaceAll(bytes.ReplaceAll(raw, []byte("\r\n"), []byte("\r")), []byte("\r"), []byte(sep))
				m, err := hl7.Parse(msg)
				if err != nil {
					t.Fatalf("parse with %q: %v", sep, err)
				}
				rep, errs := ParseORU(m, now, DefaultLimits)
				if len(errs) > 0 {
					t.Fatalf("errors: %v", errs)
				}
				got := render(rep)
				if first == nil {
					first = got
					golden(t, filepath.Join("testdata", name+".golden.json"), got)
				} else if !bytes.Equal(got, first) {
					t.Fatalf("segment ending %q maps differently", sep)
				}
			}
		})
	}
}

// render is the golden form: one line per reading, readable in review.
func render(rep *Report) []byte {
	type comp struct {
		Code  string  `json:"code"`
		MDC   string  `json:"mdc,omitempty"`
		Value float64 `json:"value"`
		Unit  string  `json:"unit"`
	}
	type row struct {
		OBX        []int     `json:"segments"`
		Patient    int       `json:"patient"`
		Equipment  string    `json:"equipment"`
		Code       string    `json:"code"`
		MDC        string    `json:"mdc,omitempty"`
		Value      *float64  `json:"value,omitempty"`
		Unit       string    `json:"unit"`
		Time       time.Time `json:"time"`
		Components []comp    `json:"components,omitempty"`
	}
	out := struct {
		Patients []Patient `json:"patients"`
		Readings []row     `json:"readings"`
		Notes    []string  `json:"notes"`
	}{Patients: rep.Patients}
	for _, r := range rep.Readings {
		w := row{OBX: r.OBX, Patient: r.Patient, Equipment: r.Equipment, Code: r.Code, MDC: r.MDC, Unit: r.Unit, Time: r.Time}
		if r.HasValue {
			v := r.Value
			w.Value = &v
		}
		for _, c := range r.Components {
			w.Components = append(w.Components, comp{c.Code, c.MDC, c.Value, c.Unit})
		}
		out.Readings = append(out.Readings, w)
	}
	for _, n := range rep.Notes {
		out.Notes = append(out.Notes, string(n.Severity)+" "+n.Error())
	}
	b, _ := json.MarshalIndent(out, "", "  ")
	return append(b, '\n')
}

func TestMalformed(t *testing.T) {
	base := "MSH|^~\\&|GW^0800^EUI-64|F|||20260101120000+0000||ORU^R01^ORU_R01|C1|P|2.6\r" +
		"PID|||P1^^^H^MR\rOBR|1|||X|||20260101115900+0000\r"
	cases := []struct {
		name, obx, want string
	}{
		{"bad number", "OBX|1|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC|1.1.1.1|9x7|262688^MDC_DIM_PERCENT^MDC|||||R", "OBX-5"},
		{"NaN", "OBX|1|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC|1.1.1.1|NaN|262688^MDC_DIM_PERCENT^MDC|||||R", "not a number"},
		{"exponent", "OBX|1|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC|1.1.1.1|1e2|262688^MDC_DIM_PERCENT^MDC|||||R", "not a number"},
		{"out of range", "OBX|1|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC|1.1.1.1|140|262688^MDC_DIM_PERCENT^MDC|||||R", "possible range"},
		{"no unit", "OBX|1|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC|1.1.1.1|97||||||R", "unit is missing"},
		{"wrong unit", "OBX|1|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC|1.1.1.1|97|mm[Hg]^mm[Hg]^UCUM|||||R", "not accepted"},
		{"unknown MDC unit", "OBX|1|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC|1.1.1.1|97|1^MDC_DIM_FOO^MDC|||||R", "not an MDC unit"},
		{"bad time", "OBX|1|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC|1.1.1.1|97|%^%^UCUM|||||R|||2026130112", "OBX-14"},
		{"future", "OBX|1|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC|1.1.1.1|97|%^%^UCUM|||||R|||20300101000000+0000", "future"},
		{"lonely systolic", "OBX|1|NM|150021^MDC_PRESS_BLD_NONINV_SYS^MDC|1.1.1.1|120|mm[Hg]^mm[Hg]^UCUM|||||R", "systolic and diastolic"},
		{"panel code", "OBX|1|NM|150020^MDC_PRESS_BLD_NONINV^MDC|1.1.1.1|120|mm[Hg]^mm[Hg]^UCUM|||||R", "panel"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, err := hl7.Parse([]byte(base + c.obx + "\r"))
			if err != nil {
				t.Fatal(err)
			}
			rep, errs := ParseORU(m, now, DefaultLimits)
			if len(errs) == 0 {
				t.Fatalf("accepted: %+v", rep.Readings)
			}
			if !strings.Contains(errs[0].Error(), c.want) {
				t.Fatalf("error %q does not mention %q", errs[0].Error(), c.want)
			}
		})
	}
}

func TestValueTypesAndInheritance(t *testing.T) {
	msg := "MSH|^~\\&|GW^0800^EUI-64|F|||20260101120000-0500||ORU^R01^ORU_R01|C1|P|2.6\r" +
		"PID|||P1^^^H^MR\rPV1||I|ICU^12^A\rOBR|1|||X|||20260101115000\r" +
		"OBX|1||69965^MDC_DEV_MON_PHYSIO_MULTI_PARAM_MDS^MDC|1.0.0.0|||||||X|||20260101115500||||MDS-1\r" +
		"OBX|2|SN|150456^MDC_PULS_OXIM_SAT_O2^MDC|1.1.1.1|=^97|262688^MDC_DIM_PERCENT^MDC|||||R\r" +
		"OBX|3|ST|151562^MDC_RESP_RATE^MDC|1.1.1.2|16|264928^MDC_DIM_RESP_PER_MIN^MDC|||||R|||20260101115800+0000||||OWN\r" +
		"OBX|4|SN|150456^MDC_PULS_OXIM_SAT_O2^MDC|1.1.1.3|<^90|262688^MDC_DIM_PERCENT^MDC|||||R\r" +
		"OBX|5|CWE|184327^MDC_ECG_STAT_RHY^MDC|1.1.1.4|X^Sinus||||||R\r" +
		"OBX|6|NM|147232^MDC_ECG_TIME_PD_QT_GL^MDC|1.1.1.5|360|264338^MDC_DIM_MILLI_SEC^MDC|||||R\r" +
		"OBX|7|NM|8310-5^Body temperature^LN|1.1.1.6|98.6|[degF]^[degF]^UCUM|||||R\r" +
		"OBX|8|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC|1.1.1.7|96|%|||||D\r"
	m, err := hl7.Parse([]byte(msg))
	if err != nil {
		t.Fatal(err)
	}
	rep, errs := ParseORU(m, now, DefaultLimits)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	golden(t, filepath.Join("testdata", "value-types.golden.json"), render(rep))
}

func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if os.Getenv("UPDATE_GOLDEN") != "" {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with UPDATE_GOLDEN=1 to create)", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s differs:\n got: %s\nwant: %s", path, got, want)
	}
}
