package mllp

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// echo answers each message with "ACK:" + the message, after an optional
// delay, and records what it saw.
type echo struct {
	mu    sync.Mutex
	seen  []string
	large int
	delay func(msg string) time.Duration
}

func (e *echo) HandleHL7(_ context.Context, msg []byte, tooLarge bool) func() []byte {
	m := string(msg)
	e.mu.Lock()
	e.seen = append(e.seen, m)
	if tooLarge {
		e.large++
	}
	e.mu.Unlock()
	done := make(chan struct{})
	go func() {
		if e.delay != nil {
			time.Sleep(e.delay(m))
		}
		close(done)
	}()
	return func() []byte {
		<-done
		if tooLarge {
			return []byte("TOO LARGE:" + m[:min(len(m), 8)])
		}
		return []byte("ACK:" + m)
	}
}

func start(t *testing.T, s *Server) string {
	t.Helper()
	s.Addr = "127.0.0.1:0"
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s.ListenAddr().String()
}

func frame(msg string) []byte { return []byte("\x0b" + msg + "\x1c\r") }

func readAck(t *testing.T, r *bufio.Reader) string {
	t.Helper()
	f := &frameReader{r: r, max: 1 << 20}
	b, _, err := f.next(nil)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestManyMessagesPerConnection(t *testing.T) {
	h := &echo{}
	c, err := net.Dial("tcp", start(t, &Server{Handler: h}))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	for i := 0; i < 5; i++ {
		msg := fmt.Sprintf("MSH|%d", i)
		// Stray newlines between frames are tolerated.
		c.Write(append([]byte("\n"), frame(msg)...))
		if got := readAck(t, r); got != "ACK:"+msg {
			t.Fatalf("got %q for %q", got, msg)
		}
	}
}

func TestPipelinedAcksKeepOrder(t *testing.T) {
	// Earlier messages take longer; ACKs must still come back in order.
	h := &echo{delay: func(m string) time.Duration {
		if strings.HasSuffix(m, "0") {
			return 30 * time.Millisecond
		}
		return 0
	}}
	c, err := net.Dial("tcp", start(t, &Server{Handler: h, Window: 8}))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var all []byte
	for i := 0; i < 20; i++ {
		all = append(all, frame(fmt.Sprintf("M%d", i))...)
	}
	c.Write(all)
	r := bufio.NewReader(c)
	for i := 0; i < 20; i++ {
		if got, want := readAck(t, r), fmt.Sprintf("ACK:M%d", i); got != want {
			t.Fatalf("ACK %d = %q, want %q", i, got, want)
		}
	}
}

func TestConcurrentConnections(t *testing.T) {
	h := &echo{}
	addr := start(t, &Server{Handler: h})
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", addr)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			r := bufio.NewReader(c)
			for j := 0; j < 10; j++ {
				msg := fmt.Sprintf("C%d-%d", i, j)
				c.Write(frame(msg))
				f := &frameReader{r: r, max: 1 << 20}
				b, _, err := f.next(nil)
				if err != nil || string(b) != "ACK:"+msg {
					errs <- fmt.Errorf("conn %d msg %d: %q %v", i, j, b, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if len(h.seen) != 200 {
		t.Fatalf("handler saw %d messages, want 200", len(h.seen))
	}
}

func TestOversizeMessageIsAnsweredAndStreamStaysInStep(t *testing.T) {
	h := &echo{}
	c, err := net.Dial("tcp", start(t, &Server{Handler: h, MaxMessage: 100}))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	big := "MSH|" + strings.Repeat("x", 200<<10)
	c.Write(append(frame(big), frame("MSH|after")...))
	r := bufio.NewReader(c)
	if got := readAck(t, r); got != "TOO LARGE:MSH|xxxx" {
		t.Fatalf("oversize answered %q", got)
	}
	if got := readAck(t, r); got != "ACK:MSH|after" {
		t.Fatalf("message after the oversize one answered %q", got)
	}
	if h.large != 1 || len(h.seen[0]) != 100 {
		t.Fatalf("handler saw %d oversize, first %d bytes", h.large, len(h.seen[0]))
	}
}

func TestIdleAndSlowConnectionsAreClosed(t *testing.T) {
	addr := start(t, &Server{Handler: &echo{}, IdleTimeout: 50 * time.Millisecond, ReadTimeout: 50 * time.Millisecond})
	for _, pre := range []string{"", "\x0bMSH|half"} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte(pre))
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = c.Read(make([]byte, 1))
		if !errors.Is(err, io.EOF) {
			t.Fatalf("after %q: read gave %v, want EOF (server closed)", pre, err)
		}
		c.Close()
	}
}

func TestBadFramingClosesConnection(t *testing.T) {
	c, err := net.Dial("tcp", start(t, &Server{Handler: &echo{}}))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("\x0bMSH|x\x1cZ"))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("read gave %v, want EOF", err)
	}
}

func TestMaxConns(t *testing.T) {
	addr := start(t, &Server{Handler: &echo{}, MaxConns: 1})
	c1, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close()
	c1.Write(frame("one"))
	if got := readAck(t, bufio.NewReader(c1)); got != "ACK:one" {
		t.Fatal(got)
	}
	c2, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	c2.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c2.Read(make([]byte, 1)); err == nil {
		t.Fatal("second connection over MaxConns was served")
	}
}

func TestFallbackRefuses(t *testing.T) {
	s := &Server{}
	c, err := net.Dial("tcp", start(t, s))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write(frame("MSH|^~\\&|A|B|||x||ORU^R01|C1|P|2.6\r"))
	if got := readAck(t, bufio.NewReader(c)); !strings.Contains(got, "\rMSA|AR|C1|") {
		t.Fatalf("fallback answered %q", got)
	}
}

// FuzzFrames reads arbitrary streams: no panic, no frame over the limit,
// and a stream built of frames reads back exactly.
func FuzzFrames(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "fuzz-seeds", "*"))
	for _, p := range files {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("\x0bMSH|a\x1c\r\x0bMSH|b\x1c\r"))
	f.Fuzz(func(t *testing.T, data []byte) {
		fr := &frameReader{r: bufio.NewReaderSize(bytes.NewReader(data), 16), max: 64}
		for i := 0; i < 1000; i++ {
			msg, large, err := fr.next(nil)
			if err != nil {
				break
			}
			if len(msg) > 64 || (large && len(msg) != 64) || bytes.IndexByte(msg, endBlock) >= 0 {
				t.Fatalf("frame of %d bytes, large=%v: %q", len(msg), large, msg)
			}
		}
		// Round trip: data without framing bytes, framed, reads back.
		clean := bytes.Map(func(r rune) rune {
			if r == startBlock || r == endBlock {
				return -1
			}
			return r
		}, data)
		if len(clean) > 64 || !bytes.Equal(clean, bytes.ToValidUTF8(clean, nil)) {
			return
		}
		fr = &frameReader{r: bufio.NewReaderSize(bytes.NewReader(append(frame(string(clean)), frame("x")...)), 16), max: 64}
		got, large, err := fr.next(nil)
		if err != nil || large || !bytes.Equal(got, clean) {
			t.Fatalf("round trip of %q gave %q, %v, %v", clean, got, large, err)
		}
		if got, _, err := fr.next(nil); err != nil || string(got) != "x" {
			t.Fatalf("second frame gave %q, %v", got, err)
		}
	})
}

type panicky struct{ late bool }

func (p panicky) HandleHL7(context.Context, []byte, bool) func() []byte {
	if !p.late {
		panic("handler bug")
	}
	return func() []byte { panic("commit bug") }
}

func TestHandlerPanicIsRefusedNotFatal(t *testing.T) {
	for _, late := range []bool{false, true} {
		c, err := net.Dial("tcp", start(t, &Server{Handler: panicky{late: late}}))
		if err != nil {
			t.Fatal(err)
		}
		r := bufio.NewReader(c)
		for i := 0; i < 2; i++ { // the connection survives
			c.Write(frame("MSH|^~\\&|A|B|||x||ORU^R01|P1|P|2.6\r"))
			if got := readAck(t, r); !strings.Contains(got, "\rMSA|AR|P1|") {
				t.Fatalf("late=%v: answered %q", late, got)
			}
		}
		c.Close()
	}
}
