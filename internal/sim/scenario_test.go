package sim

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseScenarioList(t *testing.T) {
	tests := []struct {
		in      string
		want    []ScenarioSpec
		wantErr string
	}{
		{in: "hypoxia", want: []ScenarioSpec{{Name: Hypoxia, Rate: 1}}},
		{in: " sepsis=0.5 , fall=2", want: []ScenarioSpec{{Name: Sepsis, Rate: 0.5}, {Name: FallNoResponse, Rate: 2}}},
		{in: "", want: nil},
		{in: "hypoxya", wantErr: `scenario "hypoxya": name: unknown scenario "hypoxya"; one of afib,`},
		{in: "hypoxia=fast", wantErr: `scenario "hypoxia": rate "fast" is not a number`},
		{in: "hypoxia=-1", wantErr: `scenario "hypoxia": rate: must be a number from 0 to 1000`},
		{in: "hypoxia=NaN", wantErr: `rate: must be a number`},
		{in: "hypoxia=0", wantErr: `give a rate`},
		{in: "probe-off", wantErr: `unknown scenario "probe-off"`},
		{in: "=3", wantErr: `name: missing`},
	}
	for _, tc := range tests {
		got, err := ParseScenarioList(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%q: error %v, want %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil || len(got) != len(tc.want) {
			t.Errorf("%q: %v, %v", tc.in, got, err)
			continue
		}
		for i := range got {
			if got[i] != tc.want[i] {
				t.Errorf("%q: %+v, want %+v", tc.in, got[i], tc.want[i])
			}
		}
	}
}

func TestParseScenarioFile(t *testing.T) {
	good, err := os.ReadFile(filepath.Join("testdata", "scenarios.json"))
	if err != nil {
		t.Fatal(err)
	}
	specs, err := ParseScenarioFile(good)
	if err != nil {
		t.Fatal(err)
	}
	if len(specs) != 3 || specs[1] != (ScenarioSpec{Name: FallNoResponse, Share: 0.1, At: 2 * time.Minute, Duration: 30 * time.Minute}) {
		t.Errorf("%+v", specs)
	}
	tests := []struct{ in, wantErr string }{
		{`{"scenarios":[{"name":"hypoxia","rate":1,"at":"soon"}]}`, `scenarios[0].at: "soon" is not a duration`},
		{`{"scenarios":[{"name":"hypoxia","rate":1},{"name":"sepsis","rate":-2}]}`, `scenarios[1].rate: must be a number from 0 to 1000`},
		{`{"scenarios":[{"name":"fall","share":1.5}]}`, `scenarios[0].share: must be a fraction from 0 to 1`},
		{`{"scenarios":[{"name":"fall","share":1,"duration":5}]}`, `scenarios[0].duration: must be a duration string`},
		{`{"scenarios":[{"name":"fall","share":1,"duration":"-5m"}]}`, `scenarios[0].duration: "-5m" must not be negative`},
		{`{"scenarios":[{"nmae":"fall"}]}`, `unknown field "nmae"`},
		{`{"scenarios":[{"name":"fall"}]}`, `scenarios[0].rate: give a rate`},
		{`{"scenarios":[{"name":"ebola","rate":1}]}`, `scenarios[0].name: unknown scenario "ebola"`},
		{`{}`, `"scenarios" is missing`},
		{`[1,2]`, `scenario file: json: cannot unmarshal array`},
		{`{"scenarios":[]} {}`, `unexpected data after`},
	}
	for _, tc := range tests {
		_, err := ParseScenarioFile([]byte(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("%s: error %v, want %q", tc.in, err, tc.wantErr)
		}
	}
}

func FuzzParseScenarios(f *testing.F) {
	for _, name := range []string{"scenarios.json"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"scenarios":[{"name":"hypoxia","rate":1e308,"at":"1h","duration":"9999999h"}]}`))
	f.Add([]byte("hypoxia=2,sepsis"))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, parse := range []func([]byte) ([]ScenarioSpec, error){ParseScenarioFile, func(b []byte) ([]ScenarioSpec, error) { return ParseScenarioList(string(b)) }} {
			specs, err := parse(data)
			if err != nil {
				continue
			}
			// Whatever parses must be valid for a run.
			for _, s := range specs {
				if err := s.validate(func(f string) string { return f }); err != nil {
					t.Fatalf("accepted an invalid spec %+v: %v", s, err)
				}
			}
		}
	})
}
