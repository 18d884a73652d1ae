package inbound

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/tendhealth/tend/internal/reading"
)

type nopCommit struct{}

func (nopCommit) Commit(context.Context, []reading.Reading) error { return nil }

// BenchmarkHandleORU is the handler's own cost per ORU^R01 with 10 OBX
// (parse, map, attribute, ACK), the commit left out.
func BenchmarkHandleORU(b *testing.B) {
	f := newFixture(b)
	f.patient(b, "p1", "P1")
	f.device(b, "d1", "DEV-1", "")
	f.h.Commit = nopCommit{}
	obx := strings.Repeat("OBX|1|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC|1.1.1.1|97|262688^MDC_DIM_PERCENT^MDC|||||R|||%s||||DEV-1\r", 1)
	msgs := make([][]byte, b.N)
	for i := range msgs {
		var sb strings.Builder
		fmt.Fprintf(&sb, "MSH|^~\\&|GW^0800^EUI-64|F|||20260101120000+0000||ORU^R01^ORU_R01|C%d|P|2.6\rPID|||P1^^^H^MR\rOBR|1|||X|||20260101115900+0000\r", i)
		for j := 0; j < 10; j++ {
			fmt.Fprintf(&sb, obx, fmt.Sprintf("202601011159%02d+0000", j))
		}
		msgs[i] = []byte(sb.String())
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		ack := f.h.HandleHL7(context.Background(), msgs[i], false)()
		if !strings.Contains(string(ack), "MSA|AA|") {
			b.Fatalf("%q", ack)
		}
	}
}
