package outbound

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tendhealth/tend/internal/codes"
	"github.com/tendhealth/tend/internal/hl7"
	"github.com/tendhealth/tend/internal/hl7/pcd"
	"github.com/tendhealth/tend/internal/reading"
)

var update = flag.Bool("update", false, "rewrite golden files")

var t0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

func sampleObs() []Observation {
	spo2 := reading.Reading{Patient: "p1", Device: "dev|1", Code: codes.OxygenSaturation, Value: 97, HasValue: true, Unit: "%", Time: t0}
	bp := reading.Reading{Patient: "p1", Device: "dev|1", Code: codes.BloodPressurePanel, Unit: "mm[Hg]", Time: t0.Add(1500 * time.Millisecond),
		Components: []reading.Component{{Code: codes.SystolicBP, Value: 121, Unit: "mm[Hg]"}, {Code: codes.DiastolicBP, Value: 79, Unit: "mm[Hg]"}}}
	news := reading.Reading{Patient: "p1", Device: "tend-rules", Code: codes.NEWS2Score, Value: 3, HasValue: true, Unit: "{score}", Time: t0.Add(2 * time.Second)}
	return []Observation{
		{Reading: spo2, Equipment: "0123456789ABCDEF", EquipmentType: "EUI-64"},
		{Reading: bp, Equipment: "0123456789ABCDEF", EquipmentType: "EUI-64"},
		{Reading: news},
	}
}

// hostile is a patient whose every string tries to break the message.
var hostile = Patient{
	ID:          "p1",
	Identifiers: []Identifier{{Value: "MRN|1^2~3\\4&5", Authority: "HOSP", Type: "MR"}, {Value: "X\r\nMSH|evil", AuthorityURI: "https://id.example/mrn", Type: "MR"}},
	Family:      "O'Brien|\x1c\x0b", Given: []string{"Ann^e", "Marie"},
	BirthDate: "1950-02-03", Gender: "female", Location: "WEST/ICU/12/A",
}

func TestBuildORUGolden(t *testing.T) {
	b := BuildORU(Header{SendingFacility: "WEST&HOSP", ReceivingApp: "EHR", ReceivingFacility: "MAIN"}, ControlID(sampleObs()), t0, hostile, sampleObs())
	if strings.ContainsAny(string(b), "\n\x0b\x1c") {
		t.Fatalf("message carries a line feed or MLLP framing byte:\n%q", b)
	}
	if n := strings.Count(string(b), "\r"); n != 8 {
		t.Errorf("%d segments, want 8 (MSH PID PV1 OBR, 4 OBX)", n)
	}
	path := filepath.Join("testdata", "oru-hostile.golden")
	if *update {
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(want) != string(b) {
		t.Errorf("message differs from %s (run with -update to accept):\n%s", path, strings.ReplaceAll(string(b), "\r", "\n"))
	}
}

// What Tend sends, Tend's own PCD-01 reader reads back unchanged: codes,
// values, units, times, equipment, patient identifiers and location.
func TestBuildORURoundTrip(t *testing.T) {
	obs := sampleObs()
	b := BuildORU(Header{}, ControlID(obs), t0, hostile, obs)
	m, err := hl7.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	if h := m.Header(); h.Type != "ORU" || h.Event != "R01" || h.Version != Version || h.ControlID != ControlID(obs) || h.SendingApp != "TEND" {
		t.Errorf("header %+v", h)
	}
	rep, errs := pcd.ParseORU(m, t0.Add(time.Hour), pcd.DefaultLimits)
	if len(errs) > 0 {
		t.Fatalf("errors: %v", errs)
	}
	if len(rep.Patients) != 1 {
		t.Fatalf("patients %+v", rep.Patients)
	}
	ids := rep.Patients[0].IDs
	if len(ids) != 3 || ids[0].Value != "MRN|1^2~3\\4&5" || ids[0].Authority != "HOSP" || ids[1].Value != "X\r\nMSH|evil" ||
		ids[1].Authority != "https://id.example/mrn" || ids[2].Value != "p1" || ids[2].Authority != "TEND" {
		t.Errorf("patient ids %+v", ids)
	}
	if loc := rep.Patients[0].Location.String(); loc != "WEST/ICU/12/A" {
		t.Errorf("location %q", loc)
	}
	// The NEWS2 score goes out as SNOMED CT, which Tend's PCD-01 reader
	// (LOINC and MDC only) notes and does not store.
	if got, want := len(rep.Readings), 2; got != want {
		t.Fatalf("%d readings, want %d: %+v", got, want, rep.Readings)
	}
	if len(rep.Notes) != 1 || rep.Notes[0].Sequence != 8 {
		t.Errorf("notes %v, want one about the SNOMED CT OBX", rep.Notes)
	}
	if got := m.All("OBX")[3].C(3, 1); got != codes.NEWS2Score {
		t.Errorf("NEWS2 OBX-3 %q", got)
	}
	for i, r := range rep.Readings {
		o := obs[i]
		if r.Code != o.Code || !r.Time.Equal(o.Time) || r.Unit != o.Unit || r.Value != o.Value || len(r.Components) != len(o.Components) {
			t.Errorf("reading %d: got %+v, want %+v", i, r.Reading, o.Reading)
		}
		for j := range r.Components {
			if r.Components[j].Code != o.Components[j].Code || r.Components[j].Value != o.Components[j].Value {
				t.Errorf("reading %d component %d: %+v", i, j, r.Components[j])
			}
		}
		wantEq := o.Equipment
		if wantEq == "" {
			wantEq = o.Device
		}
		if r.Equipment != wantEq {
			t.Errorf("reading %d equipment %q, want %q", i, r.Equipment, wantEq)
		}
	}
	if got := m.First("PID").C(5, 1); got != hostile.Family {
		t.Errorf("family %q", got)
	}
}

func TestControlID(t *testing.T) {
	a := sampleObs()
	b := []Observation{a[2], a[0], a[1]}
	if ControlID(a) != ControlID(b) {
		t.Error("control id depends on the order of the readings")
	}
	c := sampleObs()
	c[0].Time = c[0].Time.Add(time.Millisecond)
	if ControlID(a) == ControlID(c) {
		t.Error("different readings share a control id")
	}
	d := sampleObs()
	d[0].Patient = "p2"
	if ControlID(a) == ControlID(d) {
		t.Error("readings of another patient share a control id")
	}
	if id := ControlID(a); len(id) != 33 || !strings.HasPrefix(id, "T") {
		t.Errorf("control id %q", id)
	}
}

func TestForwardable(t *testing.T) {
	for code, want := range map[string]bool{codes.HeartRate: true, codes.NEWS2Score: true, codes.Battery: false, codes.Fall: false, "nonsense": false} {
		r := reading.Reading{Code: code}
		if got := Forwardable(&r); got != want {
			t.Errorf("Forwardable(%s) = %v, want %v", code, got, want)
		}
	}
}

func TestDTM(t *testing.T) {
	for in, want := range map[time.Time]string{
		t0:                                  "20261123120000+0000",
		t0.Add(1500 * time.Millisecond):     "20261123120001.5+0000",
		t0.Add(123456789 * time.Nanosecond): "20261123120000.1234+0000",
		t0.Add(50 * time.Microsecond):       "20261123120000+0000",
		t0.In(time.FixedZone("", 3600)):     "20261123120000+0000",
	} {
		if got := dtm(in); got != want {
			t.Errorf("dtm(%v) = %s, want %s", in, got, want)
		}
	}
}
