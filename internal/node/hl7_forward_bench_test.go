package node_test

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tendhealth/tend/internal/hl7"
	"github.com/tendhealth/tend/internal/mllp"
	"github.com/tendhealth/tend/internal/node"
	"github.com/tendhealth/tend/internal/store"
)

// countingEHR answers every message AA at once and counts messages and
// OBX segments: the cheapest EHR, so the benchmark measures the sender.
// It answers nothing until open is closed.
type countingEHR struct {
	msgs, obx atomic.Int64
	open      chan struct{}
}

func (e *countingEHR) HandleHL7(_ context.Context, raw []byte, _ bool) func() []byte {
	m, err := hl7.Parse(raw)
	if err != nil {
		ack := hl7.AckUnparsed(raw, hl7.AR, nil, "EHR", time.Now())
		return func() []byte { return ack }
	}
	<-e.open
	e.obx.Add(int64(len(m.All("OBX"))))
	e.msgs.Add(1)
	ack := hl7.Ack(m, hl7.AA, nil, "EHR", time.Now())
	return func() []byte { return ack }
}

// BenchmarkHL7Forward measures forwarding to a local test EHR: b.N
// ORU^R01 (10 OBX each) are ingested over MLLP while the EHR holds back its
// first answer, then the EHR answers and the timer runs until it has every
// reading.
//
//	go test -run '^$' -bench HL7Forward -benchtime 5000x ./internal/node
func BenchmarkHL7Forward(b *testing.B) {
	e := &countingEHR{open: make(chan struct{})}
	srv := &mllp.Server{Addr: "127.0.0.1:0", Handler: e}
	if err := srv.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	defer func() {
		select {
		case <-e.open:
		default:
			close(e.open)
		}
	}()
	ehrAddr := srv.ListenAddr().String()
	dir := b.TempDir()
	n := node.New(node.Config{DataDir: dir, HTTPAddr: "off", MQTTAddr: "off", MLLPAddr: "127.0.0.1:0",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Console: io.Discard, HL7Forward: node.HL7Forward{Addr: ehrAddr}})
	ctx := context.Background()
	if err := n.Start(ctx); err != nil {
		b.Fatal(err)
	}
	defer n.Close()
	s := n.Store()
	if err := s.CreatePatient(ctx, &store.Patient{ID: "bench-p", Identifiers: []store.Identifier{{System: "urn:test", Value: "BENCH-MRN"}},
		Resource: []byte(`{"resourceType":"Patient"}`)}); err != nil {
		b.Fatal(err)
	}
	if err := s.CreateDevice(ctx, &store.Device{ID: "bench-d", Identifiers: []store.Identifier{{System: "urn:test", Value: "0800"}},
		Resource: []byte(`{"resourceType":"Device"}`)}, time.Unix(0, 0)); err != nil {
		b.Fatal(err)
	}
	c, err := net.Dial("tcp", n.Addrs().MLLP)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	base := time.Now().Add(-24 * time.Hour)
	go func() {
		w := bufio.NewWriter(c)
		for i := 0; i < b.N; i++ {
			w.Write(benchMessage(i, base))
		}
		w.Flush()
	}()
	r := bufio.NewReader(c)
	for i := 0; i < b.N; i++ {
		if err := readACK(r); err != nil {
			b.Fatal(err)
		}
	}
	// 10 OBX per message, of which NIBP systolic, diastolic and mean are
	// one reading: 8 readings, 10 OBX forwarded.
	want := int64(10 * b.N)
	b.ResetTimer()
	start := time.Now()
	close(e.open)
	for e.obx.Load() < want {
		if time.Since(start) > 10*time.Minute {
			b.Fatalf("EHR got %d of %d OBX", e.obx.Load(), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
	el := time.Since(start).Seconds()
	b.ReportMetric(float64(e.msgs.Load())/el, "ORU/s")
	b.ReportMetric(float64(8*b.N)/el, "readings/s")
	b.ReportMetric(float64(e.obx.Load())/float64(e.msgs.Load()), "OBX/ORU")
	b.ReportMetric(0, "ns/op")
}
