package bench

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/tendhealth/tend/internal/node"
)

const nodeToken = "bench-test-admin-token-0123456789abcdef"

// startNode runs a real Tend node in-process on free ports.
func startNode(t *testing.T) node.Addrs {
	t.Helper()
	n := node.New(node.Config{DataDir: t.TempDir(), HTTPAddr: "127.0.0.1:0", MQTTAddr: "127.0.0.1:0", MLLPAddr: node.Off,
		BootstrapToken: nodeToken, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Console: io.Discard})
	if err := n.Start(context.Background()); err != nil {
		t.Fatalf("start node: %v", err)
	}
	t.Cleanup(func() { n.Close() })
	return n.Addrs()
}

// TestAlarmScenarioAgainstNode runs the alarm scenario briefly against a
// real node: every probe raise must come back on the live stream, the
// background vitals must raise nothing, and the server's reading→alarm
// histogram must have observed the raises.
func TestAlarmScenarioAgainstNode(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a node")
	}
	tests := []struct {
		name, proto, stream string
	}{
		{"mqtt, one stream for all", "mqtt", StreamAll},
		{"http, one stream per probe", "http", StreamProbes},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := startNode(t)
			var out strings.Builder
			cfg := Config{
				HTTPURL: "http://" + a.HTTP, MQTTAddr: a.MQTT, Token: nodeToken, Proto: tt.proto,
				Devices: 50, ReadingsPerMessage: 10, InflightPerDevice: 4, Rate: 500,
				Duration: 3 * time.Second, Warmup: 500 * time.Millisecond, StoreTimeout: 20 * time.Second,
				Alarms: true, Probes: 5, ProbeEvery: 250 * time.Millisecond, AlarmStream: tt.stream, Out: &out,
			}
			res, err := Run(context.Background(), cfg)
			if err != nil {
				t.Fatalf("Run: %v\n%s", err, out.String())
			}
			al := res.Alarm
			if al == nil {
				t.Fatalf("no alarm result\n%s", out.String())
			}
			t.Logf("%d raises, SSE p50 %v p99 %v, server p50 %v p99 %v, %d stream events, drops %d",
				al.RaisesSent, al.SSEP50, al.SSEP99, al.AlarmP50, al.AlarmP99, al.StreamEvents, al.StreamDrops)
			if al.Patients != 50 || al.Probes != 5 || al.Stream != tt.stream {
				t.Errorf("result describes %d patients, %d probes, stream %q", al.Patients, al.Probes, al.Stream)
			}
			// 5 probes raising every 500 ms for 3 s: about 30; at least a few
			// even on a busy machine.
			if al.RaisesSent < 5 || al.RaisesSeen != al.RaisesSent || al.Missed != 0 || al.Late != 0 || al.Unexpected != 0 {
				t.Errorf("raises sent %d, seen %d, missed %d, late %d, unexpected %d",
					al.RaisesSent, al.RaisesSeen, al.Missed, al.Late, al.Unexpected)
			}
			if al.Resolved == 0 {
				t.Error("no probe alarm was seen resolved")
			}
			checkLatencies(t, "reading→SSE", al.SSEP50, al.SSEP99, al.SSEMax)
			if al.AlarmP50 <= 0 || al.AlarmP99 < al.AlarmP50 || al.AlarmP99 > 10*time.Second {
				t.Errorf("server reading→alarm p50 %v p99 %v", al.AlarmP50, al.AlarmP99)
			}
			if tt.stream == StreamAll {
				// Only the unfiltered stream sees the background patients:
				// normal vitals must raise nothing with the ward defaults.
				if len(al.OtherAlarms) != 0 {
					t.Errorf("alarms raised for background patients: %s", OtherAlarmsText(al.OtherAlarms))
				}
				if al.StreamEvents < res.Acked {
					t.Errorf("the unfiltered stream carried %d events for %d readings acked in the window", al.StreamEvents, res.Acked)
				}
			}
			if res.Lost != 0 || res.Errors != 0 || res.Stored != res.AckedTotal {
				t.Errorf("acked %d, stored %d, lost %d, errors %d %s", res.AckedTotal, res.Stored, res.Lost, res.Errors, res.FirstError)
			}
		})
	}
}

func TestAlarmConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"unknown stream mode", func(c *Config) { c.AlarmStream = "some" }, `alarm stream "some"`},
		{"negative probes", func(c *Config) { c.Probes = -1 }, "must not be negative"},
		{"with a baseline", func(c *Config) { c.Baseline = "127.0.0.1:1" }, "no baseline"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Config{HTTPURL: "http://127.0.0.1:1", Proto: "http", Alarms: true}
			tt.edit(&cfg)
			_, err := Run(context.Background(), cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want it to mention %q", err, tt.want)
			}
		})
	}
}
