package fhir

import (
	"errors"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func utc(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t
}

func TestParseFHIRDate(t *testing.T) {
	tests := []struct {
		in     string
		lo, hi string
		bad    bool
	}{
		{in: "2026", lo: "2026-01-01T00:00:00Z", hi: "2027-01-01T00:00:00Z"},
		{in: "2026-11", lo: "2026-11-01T00:00:00Z", hi: "2026-12-01T00:00:00Z"},
		{in: "2026-12", lo: "2026-12-01T00:00:00Z", hi: "2027-01-01T00:00:00Z"},
		{in: "2026-11-23", lo: "2026-11-23T00:00:00Z", hi: "2026-11-24T00:00:00Z"},
		{in: "2028-02-29", lo: "2028-02-29T00:00:00Z", hi: "2028-03-01T00:00:00Z"},
		{in: "2026-11-23T10:00", lo: "2026-11-23T10:00:00Z", hi: "2026-11-23T10:01:00Z"},
		{in: "2026-11-23T10:00Z", lo: "2026-11-23T10:00:00Z", hi: "2026-11-23T10:01:00Z"},
		{in: "2026-11-23T10:00:05", lo: "2026-11-23T10:00:05Z", hi: "2026-11-23T10:00:06Z"},
		{in: "2026-11-23T10:00:05+02:00", lo: "2026-11-23T08:00:05Z", hi: "2026-11-23T08:00:06Z"},
		{in: "2026-11-23T10:00:05-05:30", lo: "2026-11-23T15:30:05Z", hi: "2026-11-23T15:30:06Z"},
		{in: "2026-11-23T10:00:05.5Z", lo: "2026-11-23T10:00:05.5Z", hi: "2026-11-23T10:00:05.6Z"},
		{in: "2026-11-23T10:00:05.123456789Z", lo: "2026-11-23T10:00:05.123456789Z", hi: "2026-11-23T10:00:05.12345679Z"},
		{in: "", bad: true},
		{in: "26", bad: true},
		{in: "2026-13", bad: true},
		{in: "2027-02-29", bad: true},
		{in: "2026-11-23T24:00", bad: true},
		{in: "2026-11-23T10", bad: true},
		{in: "2026-11-23T10:00:05+15:00", bad: true},
		{in: "0000", bad: true},
		{in: "2026-11-23 10:00", bad: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			lo, hi, err := parseFHIRDate(tt.in)
			if tt.bad {
				if err == nil {
					t.Fatalf("parseFHIRDate(%q) = %v, %v; want error", tt.in, lo, hi)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseFHIRDate(%q): %v", tt.in, err)
			}
			if !lo.Equal(utc(tt.lo)) || !hi.Equal(utc(tt.hi)) {
				t.Errorf("parseFHIRDate(%q) = [%v, %v), want [%v, %v)", tt.in, lo, hi, tt.lo, tt.hi)
			}
		})
	}
}

func manyCodes(n int) string {
	codes := make([]string, n)
	for i := range codes {
		codes[i] = strconv.Itoa(10000+i) + "-1"
	}
	return strings.Join(codes, ",")
}

func TestParseObservationSearch(t *testing.T) {
	base := ObservationSearch{Patient: "p1", ResultParams: ResultParams{Count: DefaultCount, keyset: true}}
	y2026, y2027 := utc("2026-01-01T00:00:00Z"), utc("2027-01-01T00:00:00Z")
	apGap := fixedNow.Sub(y2026) / 10
	with := func(f func(*ObservationSearch)) ObservationSearch {
		s := base
		f(&s)
		return s
	}
	tests := []struct {
		name   string
		query  string
		strict bool
		want   ObservationSearch
		status int // expected error status; 0 means success
	}{
		{name: "patient only", query: "patient=p1", want: base},
		{name: "patient reference", query: "patient=Patient/p1", want: base},
		{name: "subject", query: "subject=Patient/p1", want: base},
		{name: "patient and subject agree", query: "patient=p1&subject=Patient/p1", want: base},
		{name: "patient and subject differ", query: "patient=p1&subject=Patient/p2", status: 400},
		{name: "no patient", query: "code=8867-4", status: 400},
		{name: "two patients", query: "patient=p1,p2", status: 400},
		{name: "bad patient id", query: "patient=a/b", status: 400},
		{name: "loinc with system", query: "patient=p1&code=http://loinc.org|8867-4",
			want: with(func(s *ObservationSearch) { s.Codes = []string{"8867-4"} })},
		{name: "loinc without system", query: "patient=p1&code=8867-4,59408-5",
			want: with(func(s *ObservationSearch) { s.Codes = []string{"8867-4", "59408-5"} })},
		{name: "loinc synonym", query: "patient=p1&code=http://loinc.org|2708-6",
			want: with(func(s *ObservationSearch) { s.Codes = []string{"59408-5"} })},
		{name: "mdc numeric", query: "patient=p1&code=urn:iso:std:iso:11073:10101|150456",
			want: with(func(s *ObservationSearch) { s.Codes = []string{"59408-5"} })},
		{name: "mdc ref id is not a numeric code", query: "patient=p1&code=urn:iso:std:iso:11073:10101|MDC_PULS_OXIM_SAT_O2",
			want: with(func(s *ObservationSearch) { s.NoMatch = true })},
		{name: "unknown system matches nothing", query: "patient=p1&code=http://snomed.info/sct|123",
			want: with(func(s *ObservationSearch) { s.NoMatch = true })},
		{name: "code AND intersects", query: "patient=p1&code=8867-4,59408-5&code=59408-5",
			want: with(func(s *ObservationSearch) { s.Codes = []string{"59408-5"} })},
		{name: "too many codes", query: "patient=p1&code=" + manyCodes(101), status: 400},
		{name: "empty code", query: "patient=p1&code=http://loinc.org|", status: 400},
		{name: "category vital-signs", query: "patient=p1&category=http://terminology.hl7.org/CodeSystem/observation-category|vital-signs", want: base},
		{name: "category laboratory", query: "patient=p1&category=laboratory",
			want: with(func(s *ObservationSearch) { s.NoMatch = true })},
		{name: "date ge and lt", query: "patient=p1&date=ge2026-01-01T00:00:00Z&date=lt2026-02-01",
			want: with(func(s *ObservationSearch) { s.From, s.To = utc("2026-01-01T00:00:00Z"), utc("2026-02-01T00:00:00Z") })},
		{name: "date eq day", query: "patient=p1&date=2026-11-23",
			want: with(func(s *ObservationSearch) { s.From, s.To = utc("2026-11-23T00:00:00Z"), utc("2026-11-24T00:00:00Z") })},
		{name: "date gt day", query: "patient=p1&date=gt2026-11-23",
			want: with(func(s *ObservationSearch) { s.From = utc("2026-11-24T00:00:00Z") })},
		{name: "date le month", query: "patient=p1&date=le2026-11",
			want: with(func(s *ObservationSearch) { s.To = utc("2026-12-01T00:00:00Z") })},
		{name: "date sa eb", query: "patient=p1&date=sa2026-11-23T10:00&date=eb2026-11-23T11:00",
			want: with(func(s *ObservationSearch) { s.From, s.To = utc("2026-11-23T10:01:00Z"), utc("2026-11-23T11:00:00Z") })},
		{name: "date narrowest wins", query: "patient=p1&date=ge2026&date=ge2026-06&date=lt2027&date=lt2026-07",
			want: with(func(s *ObservationSearch) { s.From, s.To = utc("2026-06-01T00:00:00Z"), utc("2026-07-01T00:00:00Z") })},
		{name: "date disjoint", query: "patient=p1&date=ge2026-06&date=lt2026-01",
			want: with(func(s *ObservationSearch) {
				s.From, s.To, s.NoMatch = utc("2026-06-01T00:00:00Z"), utc("2026-06-01T00:00:00Z"), true
			})},
		{name: "date ne", query: "patient=p1&date=ne2026",
			want: with(func(s *ObservationSearch) { s.Excluded = []Window{{y2026, y2027}} })},
		{name: "date ap", query: "patient=p1&date=ap2026",
			want: with(func(s *ObservationSearch) { s.From, s.To = y2026.Add(-apGap), y2027.Add(apGap) })},
		{name: "date ne garbage", query: "patient=p1&date=neyesterday", status: 400},
		{name: "id without patient", query: "_id=1-a,2-b",
			want: ObservationSearch{IDs: []string{"1-a", "2-b"}, ResultParams: base.ResultParams}},
		{name: "id bad", query: "_id=a/b", status: 400},
		{name: "device list", query: "patient=p1&device=Device/d1,d2&device=d2",
			want: with(func(s *ObservationSearch) { s.Devices = []string{"d2"} })},
		{name: "device disjoint", query: "patient=p1&device=d1&device=d2",
			want: with(func(s *ObservationSearch) { s.NoMatch = true })},
		{name: "device bad", query: "patient=p1&device=Patient/x", status: 400},
		{name: "status final", query: "patient=p1&status=final,amended", want: base},
		{name: "status preliminary", query: "patient=p1&status=preliminary",
			want: with(func(s *ObservationSearch) { s.NoMatch = true })},
		{name: "identifier matches nothing", query: "patient=p1&identifier=urn:x|1",
			want: with(func(s *ObservationSearch) { s.NoMatch = true })},
		{name: "include device", query: "patient=p1&_include=Observation:device",
			want: with(func(s *ObservationSearch) { s.IncludeDevices = true })},
		{name: "include other", query: "patient=p1&_include=Observation:subject", status: 400},
		{name: "elements", query: "patient=p1&_elements=valueQuantity,effectiveDateTime",
			want: with(func(s *ObservationSearch) { s.Elements = []string{"valueQuantity", "effectiveDateTime"} })},
		{name: "elements bad", query: "patient=p1&_elements=a.b", status: 400},
		{name: "cursor", query: "patient=p1&_cursor=1-abc",
			want: with(func(s *ObservationSearch) { s.Cursor = "1-abc" })},
		{name: "cursor bad", query: "patient=p1&_cursor=zz", status: 400},
		{name: "cursor with offset", query: "patient=p1&_cursor=1-abc&_offset=3", status: 400},
		{name: "date bad prefix", query: "patient=p1&date=xx2026", status: 400},
		{name: "date garbage", query: "patient=p1&date=yesterday", status: 400},
		{name: "count", query: "patient=p1&_count=10&_offset=20",
			want: with(func(s *ObservationSearch) { s.Count, s.Offset = 10, 20 })},
		{name: "count clamped", query: "patient=p1&_count=5000",
			want: with(func(s *ObservationSearch) { s.Count = MaxCount })},
		{name: "count zero is count only", query: "patient=p1&_count=0",
			want: with(func(s *ObservationSearch) { s.Count, s.CountOnly = 0, true })},
		{name: "count negative", query: "patient=p1&_count=-1", status: 400},
		{name: "count twice", query: "patient=p1&_count=1&_count=2", status: 400},
		{name: "offset text", query: "patient=p1&_offset=x", status: 400},
		{name: "summary count", query: "patient=p1&_summary=count",
			want: with(func(s *ObservationSearch) { s.CountOnly = true })},
		{name: "summary text", query: "patient=p1&_summary=text", status: 400},
		{name: "sort oldest", query: "patient=p1&_sort=date",
			want: with(func(s *ObservationSearch) { s.Oldest = true })},
		{name: "sort newest", query: "patient=p1&_sort=-date", want: base},
		{name: "sort other", query: "patient=p1&_sort=code", status: 400},
		{name: "format json", query: "patient=p1&_format=json", want: base},
		{name: "format xml", query: "patient=p1&_format=xml", status: 406},
		{name: "unknown lenient", query: "patient=p1&foo=bar",
			want: with(func(s *ObservationSearch) {
				s.Warnings = []string{`search parameter "foo" is not supported and was ignored`}
				s.Ignored = []string{"foo"}
			})},
		{name: "unknown strict", query: "patient=p1&foo=bar", strict: true, status: 400},
		{name: "modifier is unknown", query: "patient=p1&code:text=pulse", strict: true, status: 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			values, err := url.ParseQuery(tt.query)
			if err != nil {
				t.Fatal(err)
			}
			got, err := ParseObservationSearch(values, tt.strict, fixedNow)
			if tt.status != 0 {
				var fe *Error
				if !errors.As(err, &fe) || fe.Status != tt.status {
					t.Fatalf("ParseObservationSearch(%q) error = %v, want status %d", tt.query, err, tt.status)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseObservationSearch(%q): %v", tt.query, err)
			}
			if diff := cmp.Diff(tt.want, got, cmpopts.EquateEmpty(), cmp.AllowUnexported(ResultParams{})); diff != "" {
				t.Errorf("ParseObservationSearch(%q) mismatch (-want +got):\n%s", tt.query, diff)
			}
		})
	}
}

func TestParsePatientSearch(t *testing.T) {
	tests := []struct {
		query      string
		system     string
		value      string
		noIdent    bool
		countOnly  bool
		wantStatus int
	}{
		{query: "identifier=http://hospital.example/mrn|123", system: "http://hospital.example/mrn", value: "123"},
		{query: "identifier=123", value: "123"},
		{query: "identifier=|123", value: "123"},
		{query: "", noIdent: true},
		{query: "_summary=count", noIdent: true, countOnly: true},
		{query: "identifier=sys|", wantStatus: 400},
		{query: "identifier=a,b", wantStatus: 400},
		{query: "_count=abc", wantStatus: 400},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			values, _ := url.ParseQuery(tt.query)
			got, err := ParsePatientSearch(values, false)
			if tt.wantStatus != 0 {
				var fe *Error
				if !errors.As(err, &fe) || fe.Status != tt.wantStatus {
					t.Fatalf("error = %v, want status %d", err, tt.wantStatus)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.noIdent != (got.Identifier == nil) {
				t.Fatalf("identifier = %+v, want none: %v", got.Identifier, tt.noIdent)
			}
			if got.Identifier != nil && (got.Identifier.System != tt.system || got.Identifier.Value != tt.value) {
				t.Errorf("identifier = %+v, want %s|%s", *got.Identifier, tt.system, tt.value)
			}
			if got.CountOnly != tt.countOnly {
				t.Errorf("CountOnly = %v, want %v", got.CountOnly, tt.countOnly)
			}
		})
	}
}

// FuzzParseObservationSearch checks that no query string panics the parser
// and that every accepted search has a sane window and paging.
func FuzzParseObservationSearch(f *testing.F) {
	for _, s := range []string{
		"patient=p1",
		"patient=p1&code=http://loinc.org|8867-4,urn:iso:std:iso:11073:10101|150456&date=ge2026-01-01T00:00:00Z&date=lt2026-02&_count=10&_offset=5&_sort=date",
		"subject=Patient/p1&date=2026&date=gt2026-11-23T10:00:05.5+02:00&_summary=count",
		"patient=p1&date=ge9999&date=le0001",
		"patient=p1&date=2026-02-30",
		"patient=p1&_count=99999999999999999999",
		"patient=%zz",
	} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, raw string, strict bool) {
		values, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		s, err := ParseObservationSearch(values, strict, fixedNow)
		if err != nil {
			var fe *Error
			if !errors.As(err, &fe) || fe.Status < 400 || fe.Status > 499 {
				t.Fatalf("error %v is not a client error", err)
			}
			return
		}
		if !s.From.IsZero() && !s.To.IsZero() && s.From.After(s.To) {
			t.Fatalf("accepted window From %v after To %v", s.From, s.To)
		}
		if (s.Patient == "" && len(s.IDs) == 0) || (s.Patient != "" && !validID(s.Patient)) {
			t.Fatalf("accepted patient %q", s.Patient)
		}
		if s.Count < 0 || s.Count > MaxCount || s.Offset < 0 {
			t.Fatalf("accepted paging count %d offset %d", s.Count, s.Offset)
		}
	})
}
