package senml

import (
	"strings"
	"testing"
)

func TestJSONScannerStrings(t *testing.T) {
	tests := []struct {
		in   string // the value of "n"
		want string
	}{
		{`"hr"`, "hr"},
		{`"h\u0072"`, "hr"},
		{`"a\"b\\c\/d\b\f\n\r\t"`, "a\"b\\c/d\b\f\n\r\t"},
		{`"\u00e9t\u00E9"`, "été"},
		{`"été"`, "été"},
		{`"\ud83d\ude00"`, "😀"},
		{`"\ud83dx"`, "\uFFFDx"},
		{`"\ude00\ud83d"`, "\uFFFD\uFFFD"},
		{`"\ud83d\u0041"`, "\uFFFDA"},
	}
	for _, tt := range tests {
		recs, err := parseJSON([]byte(`[{"n":`+tt.in+`}]`), 10)
		if err != nil {
			t.Errorf("%s: %v", tt.in, err)
			continue
		}
		if got := *recs[0].Name; got != tt.want {
			t.Errorf("%s = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestJSONScannerNumbers(t *testing.T) {
	tests := []struct {
		in   string
		want float64
	}{
		{"0", 0}, {"-0", 0}, {"72", 72}, {"-1.5", -1.5}, {"1e3", 1000}, {"1E+3", 1000}, {"2.5e-1", 0.25},
		{"1795435200.25", 1795435200.25},
	}
	for _, tt := range tests {
		recs, err := parseJSON([]byte(`[{"v":`+tt.in+`}]`), 10)
		if err != nil {
			t.Errorf("%s: %v", tt.in, err)
			continue
		}
		if got := *recs[0].Value; got != tt.want {
			t.Errorf("%s = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestJSONScannerRejects(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{`[{"v":01}]`, "expected , or } in a record"},
		{`[{"v":1.}]`, "expected a digit after ."},
		{`[{"v":1e}]`, "expected a digit in the exponent"},
		{`[{"v":-}]`, "expected a digit"},
		{`[{"v":+1}]`, "expected a value"},
		{`[{"v":.5}]`, "expected a value"},
		{`[{"v":NaN}]`, "expected a value"},
		{`[{"n":"a` + "\x01" + `"}]`, "control character"},
		{`[{"n":"` + "\xff" + `"}]`, "invalid UTF-8"},
		{`[{"n":"\x"}]`, "invalid escape"},
		{`[{"n":"\u12"}]`, "invalid \\u escape"},
		{`[{"n":"hr"`, "ends early"},
		{`[{"n":"hr",}]`, "expected a field name"},
		{`[{"n":"hr"},]`, "expected a record"},
		{`[{n:"hr"}]`, "expected a field name"},
		{`[{"n" "hr"}]`, "expected :"},
		{`[{"x":[1,]}]`, "expected a value"},
		{`[{"x":{"a":1,}}]`, "expected a field name"},
		{`[{"x":tru}]`, "expected a value"},
		{`[{"x":` + strings.Repeat("[", 40) + strings.Repeat("]", 40) + `}]`, "nests values more than 32 deep"},
		{`[{"x":1e999}]`, "payload has a number too large to represent"},
		{`[{"v":1}`, "ends early"},
		{`[{"v":1} {"v":2}]`, "expected , or ] after a record"},
		{``, "ends early"},
		{`  `, "ends early"},
		{`[] x`, "data after the SenML pack"},
	}
	for _, tt := range tests {
		_, err := parseJSON([]byte(tt.in), 10)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error = %v, want %q", tt.in, err, tt.want)
		}
	}
}

func TestJSONScannerIgnoresExtensions(t *testing.T) {
	recs, err := parseJSON([]byte(` [ { "x" : { "a" : [ 1 , "s\"" , true , false , null , { } , [ ] ] } , "n" : "hr" , "v" : 1 } ] `), 10)
	if err != nil {
		t.Fatal(err)
	}
	if *recs[0].Name != "hr" || *recs[0].Value != 1 {
		t.Fatalf("%+v", recs[0])
	}
}
