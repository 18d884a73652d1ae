package hl7

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const sample = "MSH|^~\\&|MON^0800^EUI-64|WARD|TEND||20260101120000+0100||ORU^R01^ORU_R01|C42|P|2.6\r" +
	"PID|||123^^^H&1.2.3&ISO^MR~456^^^X^PI||Doe^Jane\\S\\Q^\\T\\x\r" +
	"OBX|1|ST|A^B|1.1.1.1|caf\\XC3A9\\ \\F\\ \\R\\ \\E\\ \\.br\\end\\H\\!\\N\\|||||R\r"

func TestParseStructure(t *testing.T) {
	for _, sep := range []string{"\r", "\r\n", "\n", "\n\n"} {
		t.Run(strings.ReplaceAll(strings.ReplaceAll(sep, "\r", "CR"), "\n", "LF"), func(t *testing.T) {
			m, err := Parse([]byte(strings.ReplaceAll(sample, "\r", sep)))
			if err != nil {
				t.Fatal(err)
			}
			if len(m.Segments) != 3 {
				t.Fatalf("got %d segments, want 3", len(m.Segments))
			}
			h := m.Header()
			want := Header{SendingApp: "MON", SendingFacility: "WARD", ReceivingApp: "TEND", Time: "20260101120000+0100",
				Type: "ORU", Event: "R01", ControlID: "C42", ProcessingID: "P", Version: "2.6"}
			if h != want {
				t.Fatalf("header %+v, want %+v", h, want)
			}
			pid := m.First("PID")
			cases := []struct {
				f, r, c, s int
				want       string
			}{
				{3, 1, 1, 1, "123"},
				{3, 1, 4, 1, "H"},
				{3, 1, 4, 2, "1.2.3"},
				{3, 1, 4, 3, "ISO"},
				{3, 2, 1, 1, "456"},
				{3, 2, 5, 1, "PI"},
				{3, 3, 1, 1, ""},
				{5, 1, 2, 1, "Jane^Q"},
				{5, 1, 3, 1, "&x"},
				{9, 1, 1, 1, ""},
			}
			for _, c := range cases {
				if got := pid.Get(c.f, c.r, c.c, c.s); got != c.want {
					t.Errorf("PID-%d rep %d comp %d sub %d = %q, want %q", c.f, c.r, c.c, c.s, got, c.want)
				}
			}
			if n := pid.Reps(3); n != 2 {
				t.Errorf("PID-3 has %d repetitions, want 2", n)
			}
			obx := m.First("OBX")
			if got, want := obx.C(5, 1), "café | ~ \\ \nend!"; got != want {
				t.Errorf("escaped OBX-5 = %q, want %q", got, want)
			}
			msh := m.MSH()
			if msh.Raw(1) != "|" || msh.Raw(2) != "^~\\&" || msh.C(9, 3) != "ORU_R01" {
				t.Errorf("MSH numbering wrong: MSH-1 %q MSH-2 %q MSH-9.3 %q", msh.Raw(1), msh.Raw(2), msh.C(9, 3))
			}
		})
	}
}

func TestParseOtherDelimiters(t *testing.T) {
	m, err := Parse([]byte("MSH#*@!%#A#B###20260101##ADT*A01#X1#P#2.5\rPID###1*2%3@4\r"))
	if err != nil {
		t.Fatal(err)
	}
	pid := m.First("PID")
	if pid.Get(3, 1, 2, 2) != "3" || pid.Get(3, 2, 1, 1) != "4" || m.Header().Event != "A01" {
		t.Fatalf("custom delimiters misread: %q %q", pid.Get(3, 1, 2, 2), pid.Get(3, 2, 1, 1))
	}
}

func TestParseErrors(t *testing.T) {
	cases := []struct {
		name, msg string
		code      int
	}{
		{"empty", "", ErrSegmentSequence},
		{"no MSH", "PID|1\r", ErrSegmentSequence},
		{"short MSH-2", "MSH|^~|A\r", ErrDataType},
		{"duplicate delimiter", "MSH|^^\\&|A\r", ErrDataType},
		{"letter delimiter", "MSH|^~\\a|A\r", ErrDataType},
		{"no field after MSH-2", "MSH|^~\\&", ErrDataType},
		{"bad segment name", "MSH|^~\\&|A\rpid|1\r", ErrSegmentSequence},
		{"two MSH", "MSH|^~\\&|A\rMSH|^~\\&|B\r", ErrSegmentSequence},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse([]byte(c.msg))
			e, ok := err.(*Error)
			if !ok || e.Code != c.code {
				t.Fatalf("got %v, want an *Error with code %d", err, c.code)
			}
		})
	}
}

func TestEscapeRoundTrip(t *testing.T) {
	d := DefaultDelimiters
	for _, s := range []string{"", "plain", "a|b^c~d\\e&f", "line\rbreak\n\x0b\x1c", "\\X41\\"} {
		if got := d.Unescape(d.EscapeValue(s)); got != s && !strings.ContainsAny(s, "\n") {
			t.Errorf("round trip of %q gave %q", s, got)
		}
		if strings.ContainsAny(d.EscapeValue(s), "|^~&\r\n\x0b\x1c") {
			t.Errorf("escaped %q still carries a delimiter: %q", s, d.EscapeValue(s))
		}
	}
	if got := d.Unescape(`a\Zunterminated`); got != `a\Zunterminated` {
		t.Errorf("unterminated escape changed: %q", got)
	}
	if got := d.Unescape(`\Q\x`); got != `\Q\x` {
		t.Errorf("unknown escape changed: %q", got)
	}
}

func TestParseTime(t *testing.T) {
	cet := time.FixedZone("", 3600)
	cases := []struct {
		in   string
		want time.Time
		bad  bool
	}{
		{"20150122115000", time.Date(2015, 1, 22, 11, 50, 0, 0, cet), false},
		{"20110602045842+0000", time.Date(2011, 6, 2, 4, 58, 42, 0, time.UTC), false},
		{"20110602045842-0500", time.Date(2011, 6, 2, 9, 58, 42, 0, time.UTC), false},
		{"20110602045842.123+0000", time.Date(2011, 6, 2, 4, 58, 42, 123e6, time.UTC), false},
		{"201106020458", time.Date(2011, 6, 2, 4, 58, 0, 0, cet), false},
		{"2011", time.Date(2011, 1, 1, 0, 0, 0, 0, cet), false},
		{"20110230", time.Time{}, true},
		{"2011060204584", time.Time{}, true},
		{"20110602045842+00", time.Time{}, true},
		{"abc", time.Time{}, true},
		{"20111302", time.Time{}, true},
	}
	for _, c := range cases {
		got, err := ParseTime(c.in, cet)
		if c.bad {
			if err == nil {
				t.Errorf("%s: accepted as %v", c.in, got)
			}
			continue
		}
		if err != nil || !got.Equal(c.want) {
			t.Errorf("%s: got %v, %v; want %v", c.in, got, err, c.want)
		}
	}
}

func TestAckGolden(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	m, err := Parse([]byte(sample))
	if err != nil {
		t.Fatal(err)
	}
	old, err := Parse([]byte(strings.Replace(sample, "|2.6", "|2.3.1", 1)))
	if err != nil {
		t.Fatal(err)
	}
	problem := &Error{Segment: "OBX", Sequence: 3, Field: 3, Code: ErrTableValue, Msg: "code A|B is unknown"}
	cases := []struct {
		name string
		ack  []byte
	}{
		{"aa", Ack(m, AA, nil, "T1", now)},
		{"ae-v26", Ack(m, AE, []*Error{problem}, "T2", now)},
		{"ae-v231", Ack(old, AE, []*Error{problem}, "T3", now)},
		{"ar-unparsed", AckUnparsed([]byte("MSH|^~\\&|APP\x0b|FAC|||x||ORU|\x1cC9\r|P|2.5\rjunk"), AR,
			[]*Error{{Code: ErrSegmentSequence, Msg: "bad"}}, "T4", now)},
		{"ar-garbage", AckUnparsed([]byte("hello"), AR, []*Error{{Code: ErrSegmentSequence, Msg: "not HL7"}}, "T5", now)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if bytes.ContainsAny(c.ack, "\n\x0b\x1c") {
				t.Fatalf("ACK carries LF or framing bytes: %q", c.ack)
			}
			if _, err := Parse(c.ack); err != nil {
				t.Fatalf("ACK does not parse: %v\n%q", err, c.ack)
			}
			golden(t, filepath.Join("testdata", "ack-"+c.name+".golden"), bytes.ReplaceAll(c.ack, []byte("\r"), []byte("\n")))
		})
	}
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
