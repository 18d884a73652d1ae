package outbound

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tendhealth/tend/internal/hl7"
)

func TestParseAck(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		code     string
		control  string
		text     string
		notAnAck bool
	}{
		{name: "AA", in: "MSH|^~\\&|EHR|H|TEND||20260101||ACK^R01^ACK|A1|P|2.6\rMSA|AA|T1\r", code: "AA", control: "T1"},
		{name: "AE with ERR-8", in: "MSH|^~\\&|EHR|H|TEND||20260101||ACK|A1|P|2.6\rMSA|AE|T2\rERR||PID^1^3|204^Unknown key identifier^HL70357|E||||patient MRN-9 unknown\r",
			code: "AE", control: "T2", text: "patient MRN-9 unknown"},
		{name: "AE with ERR-3 only", in: "MSH|^~\\&|EHR|H|TEND||20260101||ACK|A1|P|2.6\rMSA|AE|T2\rERR|||103^Table value not found^HL70357|E\r",
			code: "AE", control: "T2", text: "Table value not found"},
		{name: "AR with MSA-3 and v2.3 ERR", in: "MSH|^~\\&|EHR|H|TEND||20260101||ACK|A1|P|2.3\rMSA|AR|T3|busy\rERR|MSH^1^9^207&Application internal error&HL70357\r",
			code: "AR", control: "T3", text: "busy; Application internal error"},
		{name: "enhanced commit accept", in: "MSH|^~\\&|EHR|H|TEND||20260101||ACK|A1|P|2.6\rMSA|CA|T4\r", code: "AA", control: "T4"},
		{name: "escaped text and control characters", in: "MSH|^~\\&|EHR|H|TEND||20260101||ACK|A1|P|2.6\rMSA|AE|T5|a\\F\\b\\X0A\\c\r", code: "AE", control: "T5", text: "a|b c"},
		{name: "LF segment ends", in: "MSH|^~\\&|EHR|H|TEND||20260101||ACK|A1|P|2.6\nMSA|AA|T6\n", code: "AA", control: "T6"},
		{name: "no MSA", in: "MSH|^~\\&|EHR|H|TEND||20260101||ACK|A1|P|2.6\r", notAnAck: true},
		{name: "unknown code", in: "MSH|^~\\&|EHR|H|TEND||20260101||ACK|A1|P|2.6\rMSA|OK|T1\r", notAnAck: true},
		{name: "garbage", in: "HTTP/1.1 400 Bad Request\r\n", notAnAck: true},
		{name: "empty", in: "", notAnAck: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, err := ParseAck([]byte(tc.in))
			if tc.notAnAck {
				if !errors.Is(err, ErrNotAck) {
					t.Fatalf("err = %v, want ErrNotAck", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if a.Code != tc.code || a.ControlID != tc.control || a.Text != tc.text {
				t.Errorf("got %+v, want code %s control %s text %q", a, tc.code, tc.control, tc.text)
			}
		})
	}
}

// The acknowledgements Tend's own listener writes are read back as what
// they say.
func TestParseAckOfTendsOwnAcks(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join("..", "testdata", "ack-*.golden"))
	if len(files) == 0 {
		t.Skip("no ACK golden files")
	}
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		a, err := ParseAck(b)
		if err != nil {
			t.Errorf("%s: %v", p, err)
			continue
		}
		want := strings.ToUpper(strings.Split(strings.TrimSuffix(filepath.Base(p), ".golden"), "-")[1])
		if a.Code != want {
			t.Errorf("%s: code %s, want %s", p, a.Code, want)
		}
		if want != "AA" && a.Text == "" {
			t.Errorf("%s: no text from an %s", p, want)
		}
	}
}

func FuzzParseAck(f *testing.F) {
	f.Add([]byte("MSH|^~\\&|EHR|H|TEND||20260101||ACK|A1|P|2.6\rMSA|AE|T2|x\rERR||PID^1^3|204^Unknown^HL70357|E||||y\r"))
	f.Add([]byte("MSH|^~\\&|EHR|H|TEND||20260101||ACK|A1|P|2.3\rMSA|AR|T3\rERR|MSH^1^9^207&x&HL70357~PID^1^3^204&y&HL70357\r"))
	f.Add(hl7.AckUnparsed([]byte("MSH|^~\\&|A|B|C|D|20260101||ORU^R01|C1|P|2.6"), hl7.AR, []*hl7.Error{{Msg: "no"}}, "X", time.Unix(0, 0)))
	files, _ := filepath.Glob(filepath.Join("..", "testdata", "ack-*.golden"))
	for _, p := range files {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		a, err := ParseAck(data)
		if err != nil {
			if !errors.Is(err, ErrNotAck) {
				t.Fatalf("error does not wrap ErrNotAck: %v", err)
			}
			return
		}
		switch a.Code {
		case hl7.AA, hl7.AE, hl7.AR:
		default:
			t.Fatalf("code %q", a.Code)
		}
		if len(a.Text) > maxText || strings.ContainsAny(a.Text, "\r\n\x00") {
			t.Fatalf("text not plain or too long: %q", a.Text)
		}
	})
}
