package node_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/tendhealth/tend/internal/node"
	"github.com/tendhealth/tend/internal/store"
)

// HL7 ingest benchmarks: ORU^R01 with 10 OBX each over one MLLP connection
// to a full node (group commit into the embedded JetStream, fsync always),
// every message answered AA only after it is durable.
//
//	go test -run '^$' -bench HL7 -benchtime 20000x ./internal/node
//
// Serial is what most senders do (next message after the ACK); Pipelined
// keeps up to 64 messages (the server's window) in flight on the connection; Paced sends at a
// fixed rate (default 2,500 msg/s, half the target) and reports the ACK
// latency.

const benchOBX = "OBX|1|NM|147842^MDC_ECG_HEART_RATE^MDC|1.1.1.1|72|264864^MDC_DIM_BEAT_PER_MIN^MDC|||||R\r" +
	"OBX|2|NM|149530^MDC_PULS_OXIM_PULS_RATE^MDC|1.1.1.2|71|264864^MDC_DIM_BEAT_PER_MIN^MDC|||||R\r" +
	"OBX|3|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC|1.1.1.3|97|262688^MDC_DIM_PERCENT^MDC|||||R\r" +
	"OBX|4|NM|151562^MDC_RESP_RATE^MDC|1.1.1.4|16|264928^MDC_DIM_RESP_PER_MIN^MDC|||||R\r" +
	"OBX|5|NM|150364^MDC_TEMP_BODY^MDC|1.1.1.5|37.1|268192^MDC_DIM_DEGC^MDC|||||R\r" +
	"OBX|6|NM|150021^MDC_PRESS_BLD_NONINV_SYS^MDC|1.1.2.1|120|266016^MDC_DIM_MMHG^MDC|||||R\r" +
	"OBX|7|NM|150022^MDC_PRESS_BLD_NONINV_DIA^MDC|1.1.2.2|80|266016^MDC_DIM_MMHG^MDC|||||R\r" +
	"OBX|8|NM|150023^MDC_PRESS_BLD_NONINV_MEAN^MDC|1.1.2.3|93|266016^MDC_DIM_MMHG^MDC|||||R\r" +
	"OBX|9|NM|188736^MDC_MASS_BODY_ACTUAL^MDC|1.1.3.1|70.5|263875^MDC_DIM_KILO_G^MDC|||||R\r" +
	"OBX|10|NM|160368^MDC_CONC_GLU_CAPILLARY_WHOLEBLOOD^MDC|1.1.3.2|104|264274^MDC_DIM_MILLI_G_PER_DL^MDC|||||R\r"

// benchMessage is message i: its own control id and observation time, so
// every message stores new readings.
func benchMessage(i int, base time.Time) []byte {
	ts := base.Add(time.Duration(i)*time.Millisecond).UTC().Format("20060102150405.000") + "+0000"
	var b bytes.Buffer
	b.WriteByte(0x0b)
	fmt.Fprintf(&b, "MSH|^~\\&|BENCH^0800^EUI-64|ICU|||%s||ORU^R01^ORU_R01|B%d|P|2.6\r", ts, i)
	b.WriteString("PID|||BENCH-MRN^^^H^MR\rOBR|1|||X|||" + ts + "\r")
	b.WriteString(benchOBX) // no OBX-18: the device is MSH-3's EUI-64
	b.WriteByte(0x1c)
	b.WriteByte(0x0d)
	return b.Bytes()
}

func startHL7Bench(b *testing.B) net.Conn {
	b.Helper()
	dir := b.TempDir()
	n := node.New(node.Config{DataDir: dir, HTTPAddr: "off", MQTTAddr: "off", MLLPAddr: "127.0.0.1:0",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Console: io.Discard})
	ctx := context.Background()
	if err := n.Start(ctx); err != nil {
		b.Fatal(err)
	}
	addrs := n.Addrs()
	s := n.Store()
	p := &store.Patient{ID: "bench-p", Identifiers: []store.Identifier{{System: "urn:test", Value: "BENCH-MRN"}}, Resource: []byte(`{"resourceType":"Patient"}`)}
	if err := s.CreatePatient(ctx, p); err != nil {
		b.Fatal(err)
	}
	d := &store.Device{ID: "bench-d", Identifiers: []store.Identifier{{System: "urn:test", Value: "0800"}}, Resource: []byte(`{"resourceType":"Device"}`)}
	if err := s.CreateDevice(ctx, d, time.Unix(0, 0)); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { n.Close() })
	c, err := net.Dial("tcp", addrs.MLLP)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	return c
}

// readACK reads one framed ACK; anything but AA is an error.
func readACK(r *bufio.Reader) error {
	frame, err := r.ReadBytes(0x1c)
	if err != nil {
		return err
	}
	if _, err := r.ReadByte(); err != nil {
		return err
	}
	if !bytes.Contains(frame, []byte("\rMSA|AA|")) {
		return fmt.Errorf("not AA: %q", frame)
	}
	return nil
}

func reportLatency(b *testing.B, lat []time.Duration, start time.Time) {
	b.ReportMetric(float64(len(lat))/time.Since(start).Seconds(), "msgs/s")
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	q := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000 }
	b.ReportMetric(q(0.5), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
	b.ReportMetric(0, "ns/op")
}

func BenchmarkHL7Serial(b *testing.B) {
	c := startHL7Bench(b)
	r := bufio.NewReader(c)
	base := time.Now().Add(-24 * time.Hour)
	msgs := make([][]byte, b.N)
	for i := range msgs {
		msgs[i] = benchMessage(i, base)
	}
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		if _, err := c.Write(msgs[i]); err != nil {
			b.Fatal(err)
		}
		if err := readACK(r); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
	}
	reportLatency(b, lat, start)
}

func BenchmarkHL7Pipelined(b *testing.B) { benchPipelined(b, 64, 0) }

// BenchmarkHL7Paced sends at a fixed rate without waiting for ACKs and
// reports the ACK latency: 2,500 msg/s (half the 5,000 msg/s target), or
// TEND_BENCH_HL7_RATE messages per second.
func BenchmarkHL7Paced(b *testing.B) {
	rate := 2500
	if v, err := strconv.Atoi(os.Getenv("TEND_BENCH_HL7_RATE")); err == nil && v > 0 {
		rate = v
	}
	benchPipelined(b, 1<<20, rate)
}

func benchPipelined(b *testing.B, window, rate int) {
	c := startHL7Bench(b)
	r := bufio.NewReader(c)
	base := time.Now().Add(-24 * time.Hour)
	msgs := make([][]byte, b.N)
	for i := range msgs {
		msgs[i] = benchMessage(i, base)
	}
	sent := make(chan time.Time, b.N)
	tokens := make(chan struct{}, min(window, b.N))
	done := make(chan []time.Duration)
	b.ResetTimer()
	start := time.Now()
	go func() {
		lat := make([]time.Duration, 0, b.N)
		for i := 0; i < b.N; i++ {
			if err := readACK(r); err != nil {
				b.Error(err)
				c.Close() // unblocks the sender
				done <- nil
				return
			}
			lat = append(lat, time.Since(<-sent))
			<-tokens
		}
		done <- lat
	}()
	for i := 0; i < b.N; i++ {
		if rate > 0 {
			if wait := time.Until(start.Add(time.Duration(i) * time.Second / time.Duration(rate))); wait > 0 {
				time.Sleep(wait)
			}
		}
		tokens <- struct{}{}
		sent <- time.Now()
		if _, err := c.Write(msgs[i]); err != nil {
			break
		}
	}
	if lat := <-done; lat != nil {
		reportLatency(b, lat, start)
	}
}
