package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/tendhealth/tend/internal/auth"
	"github.com/tendhealth/tend/internal/bench"
	"github.com/tendhealth/tend/internal/node"
)

func runBench(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	target := fs.String("target", "", "base URL of a running Tend (e.g. http://127.0.0.1:8080); empty starts one in a temporary directory")
	mqttAddr := fs.String("mqtt-addr", "", "MQTT address of the target (host:port; a comma-separated list spreads the devices over several nodes); required with --target for --proto mqtt")
	token := fs.String("token", "", "admin API token of the target (default: TEND_BOOTSTRAP_TOKEN)")
	proto := fs.String("proto", "mqtt", "ingest protocol: mqtt or http")
	devices := fs.Int("devices", 50, "simulated devices, one connection each")
	per := fs.Int("per-message", 10, "readings per message")
	inflight := fs.Int("inflight", 32, "unacknowledged messages per device")
	rate := fs.Float64("rate", 0, "target readings/s in total; 0 = as fast as acknowledged")
	duration := fs.Duration("duration", 60*time.Second, "measured duration")
	warmup := fs.Duration("warmup", 5*time.Second, "warm-up before measuring")
	baseline := fs.String("baseline", "", "also run the same MQTT load against this plain broker (e.g. 127.0.0.1:1883) and print the ratio")
	record := fs.String("record", "", "append the result as a row to this markdown file (e.g. BENCHMARKS.md)")
	alarms := fs.Bool("alarms", false, "alarm scenario: background patients plus probe patients that raise and clear sbp-low; measures reading→alarm and reading→live-stream latency")
	patients := fs.Int("patients", 0, "with --alarms: background patients, one device each (overrides --devices)")
	probes := fs.Int("probes", 20, "with --alarms: probe patients, each raising sbp-low every other --probe-every")
	probeEvery := fs.Duration("probe-every", time.Second, "with --alarms: time between a probe's changes (raise, clear, raise, …)")
	missAfter := fs.Duration("miss-after", 10*time.Second, "with --alarms: a raise not seen on the live stream by then counts as missed")
	alarmStream := fs.String("alarm-stream", bench.StreamAlarms, "with --alarms: alarms = one /api/v1/stream?events=alarm client (an alarm board); all = one unfiltered stream; probes = one ?patient= stream per probe")
	setupConc := fs.Int("setup-concurrency", 0, "parallel setup requests and connection attempts (0: 8, or 64 with --alarms)")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: tend bench [flags]\n\nDrives Tend through its external contract and reports acked readings/s,\nack latency and publish→stored latency.\n\nFlags (each also TEND_<FLAG>):")
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args, stdout); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		fmt.Fprintln(stderr, "tend bench:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	cfg := bench.Config{HTTPURL: *target, MQTTAddr: *mqttAddr, Token: *token, Proto: *proto, Devices: *devices,
		ReadingsPerMessage: *per, InflightPerDevice: *inflight, Rate: *rate, Duration: *duration, Warmup: *warmup,
		Baseline: *baseline, Out: stdout, Now: time.Now,
		Alarms: *alarms, Probes: *probes, ProbeEvery: *probeEvery, MissAfter: *missAfter, AlarmStream: *alarmStream,
		SetupConcurrency: *setupConc}
	if *alarms && *patients > 0 {
		cfg.Devices = *patients
	}
	if cfg.Token == "" {
		cfg.Token = os.Getenv("TEND_BOOTSTRAP_TOKEN")
	}
	if *target == "" {
		dir, err := os.MkdirTemp("", "tend-bench-")
		if err != nil {
			fmt.Fprintln(stderr, "tend bench:", err)
			return 1
		}
		defer os.RemoveAll(dir)
		cfg.Token = auth.NewSecret()
		n := node.New(node.Config{DataDir: dir, HTTPAddr: "127.0.0.1:0", MQTTAddr: "127.0.0.1:0", MLLPAddr: node.Off,
			BootstrapToken: cfg.Token, Logger: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})), Console: io.Discard})
		if err := n.Start(ctx); err != nil {
			fmt.Fprintln(stderr, "tend bench: start server:", err)
			return 1
		}
		defer n.Close()
		a := n.Addrs()
		cfg.HTTPURL, cfg.MQTTAddr = "http://"+a.HTTP, a.MQTT
		fmt.Fprintf(stdout, "started Tend in-process (data in %s)\n", dir)
	}
	res, err := bench.Run(ctx, cfg)
	if err != nil && !errors.Is(err, bench.ErrLost) && !errors.Is(err, bench.ErrMissedAlarms) {
		fmt.Fprintln(stderr, "tend bench:", err)
		return 1
	}
	printResult(stdout, res)
	if *record != "" {
		date, command := time.Now().UTC().Format("2006-01-02"), "tend bench "+strings.Join(args, " ")
		row, appendRow := res.Markdown(date, commitID(), machine(), command), bench.AppendToFile
		if res.Alarm != nil {
			row, appendRow = res.AlarmMarkdown(date, commitID(), machine(), command), bench.AppendAlarmToFile
		}
		if err := appendRow(*record, row); err != nil {
			fmt.Fprintln(stderr, "tend bench: record:", err)
			return 1
		}
		fmt.Fprintf(stdout, "recorded in %s\n", *record)
	}
	if err != nil {
		fmt.Fprintln(stderr, "tend bench:", err)
		return 1
	}
	return 0
}

func printResult(w io.Writer, r bench.Result) {
	fmt.Fprintf(w, "\n%s: %d devices × %d readings/message for %s\n", r.Proto, r.Devices, r.PerMessage, r.Duration)
	fmt.Fprintf(w, "  acked readings/s   %.0f\n", r.Rate)
	fmt.Fprintf(w, "  ack latency        p50 %s  p99 %s  max %s\n", r.AckP50, r.AckP99, r.AckMax)
	fmt.Fprintf(w, "  publish→stored     p50 %s  p99 %s\n", r.StoredP50, r.StoredP99)
	fmt.Fprintf(w, "  acked (all phases) %d, stored %d, lost %d, errors %d\n", r.AckedTotal, r.Stored, r.Lost, r.Errors)
	if b := r.Baseline; b != nil {
		fmt.Fprintf(w, "  baseline %s: %.0f readings/s, ack p50 %s p99 %s; Tend/baseline = %.2f\n", b.Addr, b.Rate, b.AckP50, b.AckP99, b.Ratio)
	}
	if a := r.Alarm; a != nil {
		fmt.Fprintf(w, "  alarms: %d background patients, %d probes, live stream %s\n", a.Patients, a.Probes, a.Stream)
		fmt.Fprintf(w, "  reading→alarm      p50 %s  p99 %s  (server, %s)\n", a.AlarmP50, a.AlarmP99, "tend_reading_to_alarm_seconds")
		fmt.Fprintf(w, "  reading→SSE raised p50 %s  p99 %s  max %s  (client)\n", a.SSEP50, a.SSEP99, a.SSEMax)
		fmt.Fprintf(w, "  probe raises sent %d, seen %d, missed %d, late %d, unexpected %d, resolved %d\n",
			a.RaisesSent, a.RaisesSeen, a.Missed, a.Late, a.Unexpected, a.Resolved)
		fmt.Fprintf(w, "  live stream events %d, drops %d", a.StreamEvents, a.StreamDrops)
		if a.DropReason != "" {
			fmt.Fprintf(w, " (first: %s)", a.DropReason)
		}
		fmt.Fprintln(w)
		if o := bench.OtherAlarmsText(a.OtherAlarms); o != "" {
			fmt.Fprintf(w, "  alarms raised for background patients: %s\n", o)
		}
	}
}

// commitID names the source the running binary was built from: the VCS
// stamp of `go build`, else the checkout's HEAD (for `go run`).
func commitID() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		rev, dirty := "", false
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
		if len(rev) >= 12 {
			if dirty {
				return rev[:12] + "+dirty"
			}
			return rev[:12]
		}
	}
	out, err := exec.Command("git", "rev-parse", "--short=12", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	id := strings.TrimSpace(string(out))
	if st, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(st) > 0 {
		id += "+dirty"
	}
	return id
}

func machine() string {
	model := ""
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	return fmt.Sprintf("%d cores %s/%s %s", runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, model)
}
