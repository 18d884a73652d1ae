package bench

import (
	"context"
	"errors"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

const mosquittoAddr = "127.0.0.1:1883"

func shortConfig(url string) Config {
	return Config{
		HTTPURL: url, Token: "admin-token", Proto: "http",
		Devices: 4, ReadingsPerMessage: 5, InflightPerDevice: 2,
		Duration: time.Second, Warmup: 200 * time.Millisecond, StoreTimeout: 5 * time.Second,
	}
}

func checkLatencies(t *testing.T, label string, p50, p99, pmax time.Duration) {
	t.Helper()
	if !(p50 > 0 && p50 <= p99 && p99 <= pmax && pmax < 10*time.Second) {
		t.Errorf("%s latencies not sane: p50 %v p99 %v max %v", label, p50, p99, pmax)
	}
}

func TestRunHTTPAgainstFakeTend(t *testing.T) {
	f, srv := newFakeTend(t, "admin-token")
	tests := []struct {
		name           string
		rate           float64
		minAck, maxAck int64 // readings acked in the 1 s window
	}{
		{"unpaced", 0, 1, 1 << 40},
		// The lower bound is loose: the machine may be busy. The upper bound
		// is what pacing guarantees (rate plus the catch-up burst).
		{"paced 400 readings/s", 400, 40, 550},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := shortConfig(srv.URL)
			cfg.Rate = tt.rate
			var out strings.Builder
			cfg.Out = &out
			before := f.storedTotal()
			res, err := Run(context.Background(), cfg)
			if err != nil {
				t.Fatalf("Run: %v\n%s", err, out.String())
			}
			if res.Acked < tt.minAck || res.Acked > tt.maxAck {
				t.Errorf("acked %d readings in the window, want %d..%d", res.Acked, tt.minAck, tt.maxAck)
			}
			if res.AckedTotal < res.Acked || res.AckedTotal%int64(cfg.ReadingsPerMessage) != 0 {
				t.Errorf("acked total %d vs window %d", res.AckedTotal, res.Acked)
			}
			if got := f.storedTotal() - before; res.Stored != got || res.Stored != res.AckedTotal || res.Lost != 0 {
				t.Errorf("stored %d (server has %d new), acked %d, lost %d", res.Stored, got, res.AckedTotal, res.Lost)
			}
			if res.Errors != 0 {
				t.Errorf("%d errors, first: %s", res.Errors, res.FirstError)
			}
			if want := float64(res.Acked) / cfg.Duration.Seconds(); res.Rate != want {
				t.Errorf("rate %v, want %v", res.Rate, want)
			}
			checkLatencies(t, "ack", res.AckP50, res.AckP99, res.AckMax)
			if res.StoredP50 < 5*time.Millisecond || res.StoredP50 > 10*time.Millisecond ||
				res.StoredP99 < res.StoredP50 || res.StoredP99 > 10*time.Millisecond {
				t.Errorf("stored p50 %v p99 %v, want within the fake's (5ms,10ms] bucket", res.StoredP50, res.StoredP99)
			}
			if !strings.Contains(out.String(), "measuring") {
				t.Errorf("no progress lines:\n%s", out.String())
			}
		})
	}
}

func TestRunDetectsLostReadings(t *testing.T) {
	f, srv := newFakeTend(t, "admin-token")
	f.dropEvery = 7
	cfg := shortConfig(srv.URL)
	cfg.Duration, cfg.Warmup, cfg.StoreTimeout = 500*time.Millisecond, 0, time.Second
	res, err := Run(context.Background(), cfg)
	if !errors.Is(err, ErrLost) {
		t.Fatalf("err = %v, want ErrLost", err)
	}
	if res.Lost == 0 || res.Lost != res.AckedTotal-res.Stored || res.Stored != f.storedTotal() {
		t.Errorf("lost %d, acked %d, stored %d (server %d)", res.Lost, res.AckedTotal, res.Stored, f.storedTotal())
	}
	if !strings.Contains(err.Error(), "not stored") {
		t.Errorf("error does not say what happened: %v", err)
	}
}

func TestRunErrorsAreClear(t *testing.T) {
	_, srv := newFakeTend(t, "admin-token")
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadURL := "http://" + closed.Addr().String()
	closed.Close()
	tests := []struct {
		name  string
		edit  func(*Config)
		want  []string
		never string
	}{
		{"wrong token", func(c *Config) { c.Token = "not-the-token" },
			[]string{"create patient", "401 Unauthorized", "check --token", "valid bearer token"}, "not-the-token"},
		{"nothing listening", func(c *Config) { c.HTTPURL = deadURL }, []string{"cannot reach", deadURL}, ""},
		{"bad proto", func(c *Config) { c.Proto = "coap" }, []string{`"coap" is not supported`}, ""},
		{"mqtt without address", func(c *Config) { c.Proto = "mqtt" }, []string{"MQTT address is required"}, ""},
		{"not a URL", func(c *Config) { c.HTTPURL = "localhost:8080" }, []string{"not an http(s) URL"}, ""},
		{"baseline only without broker", func(c *Config) { c.BaselineOnly = true }, []string{"baseline broker"}, ""},
		{"negative rate", func(c *Config) { c.Rate = -1 }, []string{"must not be negative"}, ""},
		{"mqtt connection refused", func(c *Config) { c.Proto, c.MQTTAddr = "mqtt", closed.Addr().String() },
			[]string{"mqtt connect", closed.Addr().String()}, "s3cret"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := shortConfig(srv.URL)
			cfg.Duration = 100 * time.Millisecond
			tt.edit(&cfg)
			_, err := Run(context.Background(), cfg)
			if err == nil {
				t.Fatal("Run succeeded, want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if tt.never != "" && strings.Contains(err.Error(), tt.never) {
				t.Errorf("error %q leaks %q", err, tt.never)
			}
		})
	}
}

func TestRunFailsWhenNothingIsAcked(t *testing.T) {
	f, srv := newFakeTend(t, "admin-token")
	f.refuseObs = true
	cfg := shortConfig(srv.URL)
	cfg.Duration, cfg.Warmup = 300*time.Millisecond, 0
	res, err := Run(context.Background(), cfg)
	if err == nil || !strings.Contains(err.Error(), "no reading was acknowledged") ||
		!strings.Contains(err.Error(), "503 Service Unavailable: stream not ready") {
		t.Fatalf("err = %v", err)
	}
	if res.Errors == 0 || res.Acked != 0 {
		t.Errorf("errors %d, acked %d", res.Errors, res.Acked)
	}
}

func needMosquitto(t *testing.T) {
	t.Helper()
	c, err := net.DialTimeout("tcp", mosquittoAddr, time.Second)
	if err != nil {
		t.Skipf("no MQTT broker on %s (%v); skipping the broker test", mosquittoAddr, err)
	}
	c.Close()
}

func TestRunBaselineOnlyAgainstMosquitto(t *testing.T) {
	needMosquitto(t)
	goroutines := runtime.NumGoroutine()
	res, err := Run(context.Background(), Config{
		Baseline: mosquittoAddr, BaselineOnly: true,
		Devices: 4, ReadingsPerMessage: 10, InflightPerDevice: 8,
		Duration: time.Second, Warmup: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	// Everything Run started must be gone once it returned (paho winds
	// down its own goroutines asynchronously, so allow it a moment).
	for deadline := time.Now().Add(2 * time.Second); runtime.NumGoroutine() > goroutines && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > goroutines {
		t.Errorf("%d goroutines left running after Run (%d before)", n, goroutines)
	}
	if res.Proto != "baseline" || res.Acked <= 0 || res.Errors != 0 {
		t.Fatalf("result %+v", res)
	}
	if res.Acked%10 != 0 || res.Rate != float64(res.Acked) {
		t.Errorf("acked %d readings, rate %v", res.Acked, res.Rate)
	}
	checkLatencies(t, "baseline ack", res.AckP50, res.AckP99, res.AckMax)
	t.Logf("mosquitto relay: %.0f readings/s, ack p50 %v p99 %v", res.Rate, res.AckP50, res.AckP99)
}

// TestRunMQTTThroughBroker runs the MQTT path end to end with the broker
// standing in for Tend's MQTT listener and the fake counting what a
// subscriber receives, then compares Tend-side and baseline figures.
func TestRunMQTTThroughBroker(t *testing.T) {
	needMosquitto(t)
	f, srv := newFakeTend(t, "admin-token")
	sub := mqtt.NewClient(mqtt.NewClientOptions().AddBroker("tcp://" + mosquittoAddr).
		SetClientID("bench-test-sub-" + f.run).SetCleanSession(true).SetOrderMatters(false))
	if tok := sub.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscriber connect: %v", tok.Error())
	}
	defer sub.Disconnect(100)
	tok := sub.Subscribe("tend/v1/devices/+/obs", 1, func(_ mqtt.Client, m mqtt.Message) {
		parts := strings.Split(m.Topic(), "/")
		if len(parts) == 5 && strings.HasPrefix(parts[3], "dev-"+f.run+"-") {
			if err := f.ingest(parts[3], m.Payload()); err != nil {
				t.Errorf("subscriber: %v", err)
			}
		}
	})
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	cfg := shortConfig(srv.URL)
	cfg.Proto, cfg.MQTTAddr, cfg.Baseline = "mqtt", mosquittoAddr, mosquittoAddr
	cfg.Rate = 2000 // paced so the single subscriber keeps up
	res, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	// Paced at 2000/s for 1 s: never more than the rate allows (plus the
	// catch-up burst), and something must get through even on a busy machine.
	if res.Acked <= 0 || res.Acked > 2500 || res.Lost != 0 || res.Errors != 0 || res.Stored != res.AckedTotal {
		t.Errorf("acked %d (total %d), stored %d, lost %d, errors %d %s",
			res.Acked, res.AckedTotal, res.Stored, res.Lost, res.Errors, res.FirstError)
	}
	checkLatencies(t, "ack", res.AckP50, res.AckP99, res.AckMax)
	if res.Baseline == nil || res.Baseline.Acked <= 0 || res.Baseline.Ratio <= 0 {
		t.Fatalf("baseline %+v", res.Baseline)
	}
	t.Logf("tend side: acked %d, p50 %v; baseline: acked %d, p50 %v", res.Acked, res.AckP50, res.Baseline.Acked, res.Baseline.AckP50)
	// The figures themselves depend on how busy the machine is; the ratio
	// must be computed from them.
	if want := res.Rate / res.Baseline.Rate; res.Baseline.Ratio != want {
		t.Errorf("ratio %v, want %v", res.Baseline.Ratio, want)
	}
}
