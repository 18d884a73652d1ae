package outbound

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/tendhealth/tend/internal/hl7"
)

// Ack is a receiver's answer to a forwarded message.
type Ack struct {
	Code      string // AA, AE or AR (an enhanced-mode CA, CE or CR is read as these)
	ControlID string // MSA-2: the control id of the message it answers
	Text      string // what the receiver said was wrong (MSA-3, ERR), "" when nothing
}

// ErrNotAck wraps every reason an answer is not a usable acknowledgement.
var ErrNotAck = errors.New("not an HL7 acknowledgement")

// maxText bounds the reason kept from an answer.
const maxText = 500

// ParseAck reads an acknowledgement: an HL7 message with an MSA segment
// whose MSA-1 is an acknowledgement code. The receiver's text is taken
// from MSA-3 and every ERR (ERR-8 user message, ERR-3 condition text, or
// the v2.3 ERR-1 code text), as plain text of at most 500 bytes.
func ParseAck(b []byte) (Ack, error) {
	m, err := hl7.Parse(b)
	if err != nil {
		return Ack{}, fmt.Errorf("%w: %v", ErrNotAck, err)
	}
	msa := m.First("MSA")
	if msa == nil {
		return Ack{}, fmt.Errorf("%w: no MSA segment", ErrNotAck)
	}
	a := Ack{ControlID: msa.C(2, 1)}
	switch code := strings.ToUpper(strings.TrimSpace(msa.C(1, 1))); code {
	case "AA", "CA":
		a.Code = hl7.AA
	case "AE", "CE":
		a.Code = hl7.AE
	case "AR", "CR":
		a.Code = hl7.AR
	default:
		return Ack{}, fmt.Errorf("%w: MSA-1 %q is not an acknowledgement code", ErrNotAck, clip(code, 10))
	}
	var texts []string
	add := func(s string) {
		s = strings.TrimSpace(s)
		if s != "" && s != `""` && !slices.Contains(texts, s) {
			texts = append(texts, s)
		}
	}
	add(msa.C(3, 1))
	for _, e := range m.All("ERR") {
		for r := 1; r <= max(e.Reps(1), 1); r++ {
			add(e.Get(1, r, 4, 2)) // v2.3 ELD: segment^sequence^field^code&text
		}
		if t := e.C(8, 1); t != "" {
			add(t)
		} else {
			add(e.C(3, 2))
		}
	}
	a.Text = clip(plain(strings.Join(texts, "; ")), maxText)
	return a, nil
}

// plain drops control characters, so a receiver's text cannot forge log
// lines or break the dead-letter reason.
func plain(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	// Cut on a rune boundary.
	for n > 0 && s[n]&0xc0 == 0x80 {
		n--
	}
	return s[:n]
}
