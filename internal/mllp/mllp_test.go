package mllp

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

func TestRefusesWithAR(t *testing.T) {
	msg, err := os.ReadFile("../../../shared/testdata/hl7/ihe-pcd01-E1.1-physiological-monitor.hl7")
	if err != nil {
		msg = []byte("MSH|^~\\&|MON|WARD|||20260101000000||ORU^R01^ORU_R01|MSG0042|P|2.6\rPID|||1\r")
	}
	s := &Server{Addr: "127.0.0.1:0", Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: time.Now}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c, err := net.Dial("tcp", s.ListenAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	msg = bytes.ReplaceAll(msg, []byte("\r\n"), []byte("\r"))
	msg = bytes.ReplaceAll(msg, []byte("\n"), []byte("\r"))
	for i := 0; i < 2; i++ { // several messages per connection
		c.Write(append(append([]byte{startBlock}, msg...), endBlock, carriage))
		ack, err := readFrame(bufio.NewReader(c), 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		segs := strings.Split(string(ack), "\r")
		if !strings.HasPrefix(segs[0], "MSH|^~\\&|TEND") || !strings.HasPrefix(segs[1], "MSA|AR|") {
			t.Fatalf("unexpected ACK %q", ack)
		}
		fs := strings.Split(string(msg), "|")
		if want := "MSA|AR|" + fs[9] + "|"; !strings.HasPrefix(segs[1], want) {
			t.Fatalf("ACK does not echo control id: %q, want prefix %q", segs[1], want)
		}
	}
}

func TestBuildARHostileControlID(t *testing.T) {
	ack := buildAR([]byte("MSH|^~\\&|A|B|||x||ORU|\x0b1\x1c2\n|P|2.5\r"), time.Unix(0, 0), "no")
	if bytes.Count(ack, []byte{startBlock}) != 1 || bytes.Count(ack, []byte{endBlock}) != 1 {
		t.Fatalf("framing bytes leaked into ACK: %q", ack)
	}
}
