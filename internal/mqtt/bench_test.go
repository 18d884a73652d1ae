package mqtt

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkPublishQoS1 measures acknowledged QoS 1 throughput: 50 device
// connections publish concurrently to a handler that returns at once.
// Each client pipelines its publishes; the server's MaxInflight window and
// TCP flow control bound what is outstanding.
func BenchmarkPublishQoS1(b *testing.B) {
	const clients = 50
	var handled atomic.Int64
	s := startServer(b, handlerFunc(func(context.Context, Message) error { handled.Add(1); return nil }))
	payload := `[{"bn":"urn:dev:mac:0024befffe804ff1:","n":"8867-4","u":"/min","v":72,"t":1700000000}]`
	conns := make([]*rawClient, clients)
	for i := range conns {
		conns[i] = dialRaw(b, s)
		conns[i].connect(level311, fmt.Sprint("bench-", i), fmt.Sprint("dev-", i), "secret", 0)
	}
	perClient := (b.N + clients - 1) / clients
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, 2*clients)
	for i, c := range conns {
		topic := fmt.Sprintf("tend/v1/devices/dev-%d/obs", i)
		wg.Add(2)
		go func(nc net.Conn) {
			defer wg.Done()
			w := bufio.NewWriter(nc)
			pkt := buildPublish(level311, 1, false, 1, topic, payload, nil)
			idAt := 2 + 2 + len(topic) // header, one length byte, topic length, topic
			for n := range perClient {
				id := uint16(n%65535 + 1)
				pkt[idAt], pkt[idAt+1] = byte(id>>8), byte(id)
				w.Write(pkt)
				if n%16 == 15 {
					if err := w.Flush(); err != nil {
						errs <- err
						return
					}
				}
			}
			if err := w.Flush(); err != nil {
				errs <- err
			}
		}(c.nc)
		go func(c *rawClient) {
			defer wg.Done()
			c.nc.SetReadDeadline(time.Now().Add(time.Minute))
			for range perClient {
				h, _, err := readPacket(c.r, 64, nil)
				if err != nil || h != typePuback<<4 {
					errs <- fmt.Errorf("ack: header %#x: %v", h, err)
					return
				}
			}
		}(c)
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	if got, want := handled.Load(), int64(perClient*clients); got != want {
		b.Fatalf("handler saw %d messages, want %d", got, want)
	}
	b.ReportMetric(float64(perClient*clients)/elapsed.Seconds(), "msgs/s")
}
