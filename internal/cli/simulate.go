package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/tendhealth/tend/internal/auth"
	"github.com/tendhealth/tend/internal/demo"
	"github.com/tendhealth/tend/internal/node"
	"github.com/tendhealth/tend/internal/sim"
)

const defaultScenarios = "hypoxia=0.5,sepsis=0.1,afib=0.2,hypertensive-crisis=0.2,fall=0.3,hypoglycaemia-fast=0.3,hypoglycaemia-slow=0.2,hf-weight-gain=0.05,battery-drain=0.1,clock-skew=0.1,missed-doses=0.3"

func runSimulate(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("simulate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	data := fs.String("data", "", "data directory of a running Tend: its listen.json gives the addresses")
	httpAddr := fs.String("http", "", "HTTP address of a running Tend (host:port or URL); overrides listen.json")
	mqttAddr := fs.String("mqtt", "", "MQTT address of a running Tend (host:port); overrides listen.json")
	mllpAddr := fs.String("mllp", "", "HL7 MLLP address of a running Tend (host:port), for --proto mllp; overrides listen.json")
	token := fs.String("token", "", "admin API token of the running Tend (registers patients and devices, reads alarms); default TEND_BOOTSTRAP_TOKEN")
	proto := fs.String("proto", "mqtt", "device protocol: mqtt, http, or mllp (clinical readings as HL7 ORU^R01 over MLLP, device status over MQTT)")
	patients := fs.Int("patients", 20, "virtual patients")
	setting := fs.String("setting", "mixed", "care setting of the patients: ward (bedside monitor), home (wearable, cuff, scale, …) or mixed (half each)")
	seed := fs.Uint64("seed", 1, "random seed: the same seed gives the same readings")
	speed := fs.Float64("speed", -1, "virtual seconds per real second: 0 = as fast as Tend acknowledges; -1 = 0 in-process, 1 (real time) against a running Tend")
	duration := fs.Duration("duration", time.Hour, "virtual duration of the run")
	scenarios := fs.String("scenario", defaultScenarios, "scenarios as name=rate (episodes per patient-day), comma separated, or a JSON file (see internal/sim/testdata/scenarios.json); names: "+strings.Join(sim.Scenarios(), ", "))
	truthPath := fs.String("truth", "tend-truth.jsonl", "write the ground truth (one JSON line per scenario start and end) to this file; empty: do not write")
	evaluate := fs.Bool("evaluate", false, "afterwards read Tend's alarm history and print sensitivity, false alarms per patient-day and time to detection per scenario")
	grace := fs.Duration("grace", 5*time.Minute, "with --evaluate: an alarm up to this long after an episode ends still detects it")
	logLevel := fs.String("log-level", "warn", "log level: debug, info, warn, error")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), `Usage: tend simulate [flags]

Simulates a fleet of virtual patients and their devices sending readings to
Tend over MQTT or HTTP with their own credentials, or as a monitor gateway
sending HL7 v2 ORU^R01 over MLLP. Without --data or --http
it starts Tend in-process in a temporary directory, sharing a virtual clock,
so a day can run in minutes. Against a running Tend it runs in real time.

Flags (each also TEND_<FLAG>):`)
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args, stdout); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		fmt.Fprintln(stderr, "tend simulate:", err)
		return 2
	}
	fail := func(code int, format string, a ...any) int {
		fmt.Fprintf(stderr, "tend simulate: "+format+"\n", a...)
		return code
	}
	if fs.NArg() > 0 {
		return fail(2, "unexpected argument %q", fs.Arg(0))
	}
	log, err := newLogger(stderr, *logLevel, "text")
	if err != nil {
		return fail(2, "%v", err)
	}
	specs, err := parseScenarioFlag(*scenarios)
	if err != nil {
		return fail(2, "--scenario: %v", err)
	}
	if *patients < 1 || *patients > 1_000_000 {
		return fail(2, "--patients %d: use 1 to 1000000", *patients)
	}
	if *proto != "mqtt" && *proto != "http" && *proto != "mllp" {
		return fail(2, "--proto %q: use mqtt, http or mllp", *proto)
	}
	if *duration <= 0 {
		return fail(2, "--duration %s: must be positive", *duration)
	}
	var ward, home int
	switch *setting {
	case "ward":
		ward = *patients
	case "home":
		home = *patients
	case "mixed":
		ward = *patients / 2
		home = *patients - ward
	default:
		return fail(2, "--setting %q: use ward, home or mixed", *setting)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	remote := *data != "" || *httpAddr != ""
	var clock *sim.VirtualClock
	start := time.Now().UTC()
	tgt := target{http: *httpAddr, mqtt: *mqttAddr, mllp: *mllpAddr, token: *token}
	if remote {
		if *speed == -1 {
			*speed = 1
		}
		if *speed != 1 {
			return fail(2, "--speed %g: against a running Tend only 1 (real time) works, since Tend stamps readings with its own clock and refuses those more than 5 minutes ahead; leave out --data and --http for a faster run against an in-process Tend", *speed)
		}
		if err := tgt.fill(*data); err != nil {
			return fail(2, "%v", err)
		}
		if tgt.token == "" {
			tgt.token = os.Getenv("TEND_BOOTSTRAP_TOKEN")
		}
		if tgt.token == "" {
			return fail(2, "--token: an admin API token of the running Tend is needed to register the simulated patients and devices")
		}
	} else {
		if *speed == -1 {
			*speed = 0
		}
		dir, err := os.MkdirTemp("", "tend-simulate-")
		if err != nil {
			return fail(1, "%v", err)
		}
		defer os.RemoveAll(dir)
		clock = sim.NewVirtualClock(start)
		tgt.token = auth.NewSecret()
		mllpListen := node.Off
		if *proto == "mllp" {
			mllpListen = "127.0.0.1:0"
		}
		n := node.New(node.Config{DataDir: dir, HTTPAddr: "127.0.0.1:0", MQTTAddr: "127.0.0.1:0", MLLPAddr: mllpListen,
			BootstrapToken: tgt.token, Now: clock.Now, Logger: log, Console: io.Discard})
		if err := n.Start(ctx); err != nil {
			return fail(1, "start Tend in-process: %v", err)
		}
		defer n.Close()
		a := n.Addrs()
		tgt.http, tgt.mqtt, tgt.mllp = a.HTTP, a.MQTT, a.MLLP
	}
	if !strings.Contains(tgt.http, "://") {
		tgt.http = "http://" + tgt.http
	}
	now := time.Now
	if clock != nil {
		now = clock.Now
	}
	var sender sim.Sender
	switch *proto {
	case "mqtt":
		if tgt.mqtt == "" {
			return fail(2, "--mqtt: the MQTT address of the running Tend is needed (or use --proto http)")
		}
		m := &sim.MQTTSender{Addr: tgt.mqtt}
		defer m.Close()
		sender = m
	case "http":
		sender = &sim.HTTPSender{Base: tgt.http}
	case "mllp":
		if tgt.mllp == "" || tgt.mqtt == "" {
			return fail(2, "--mllp, --mqtt: --proto mllp needs Tend's MLLP listener for readings and its MQTT listener for device status")
		}
		m := &sim.MQTTSender{Addr: tgt.mqtt}
		defer m.Close()
		h := &sim.MLLPSender{Addr: tgt.mllp, Fallback: m, Now: now}
		defer h.Close()
		sender = h
	}

	api := &sim.API{Base: tgt.http, Token: tgt.token}
	ps := sim.Population(ward, home, "", *seed)
	run := fmt.Sprintf("sim-%d-%d-", *seed, start.Unix())
	fmt.Fprintf(stdout, "registering %d patients and their devices at %s\n", len(ps), tgt.http)
	if err := api.Register(ctx, ps, run, 16); err != nil {
		return fail(1, "register the fleet: %v", err)
	}
	var truth io.Writer
	if *truthPath != "" {
		f, err := os.Create(*truthPath)
		if err != nil {
			return fail(1, "--truth: %v", err)
		}
		defer f.Close()
		truth = f
	}
	evaluatedBefore, err := api.EvaluatedReadings(ctx)
	if err != nil && *evaluate {
		return fail(1, "%v", err)
	}
	pace := "as fast as Tend acknowledges"
	if *speed > 0 {
		pace = fmt.Sprintf("%g× real time", *speed)
	}
	fmt.Fprintf(stdout, "simulating %s of %d patients over %s, %s\n", *duration, len(ps), *proto, pace)
	began := time.Now()
	rep, err := sim.Run(ctx, sim.Config{Patients: ps, Seed: *seed, Start: start, Duration: *duration, Speed: *speed,
		Scenarios: specs, Sender: sender, Truth: truth, Clock: clock, Logger: log})
	if err != nil {
		return fail(1, "%v", err)
	}
	took := time.Since(began)
	fmt.Fprintf(stdout, "delivered %d readings in %d messages in %s (%.0f readings/s)\n", rep.Readings, rep.Messages,
		took.Round(time.Millisecond), float64(rep.Readings)/took.Seconds())
	if rep.UndeliveredMessages > 0 {
		fmt.Fprintf(stdout, "could not deliver %d readings in %d messages; first error: %s\n", rep.UndeliveredReadings, rep.UndeliveredMessages, rep.FirstError)
	}
	if *truthPath != "" {
		fmt.Fprintf(stdout, "ground truth: %d events in %s\n", len(rep.Truth), *truthPath)
	}
	if !*evaluate {
		return 0
	}
	// The rule evaluator runs behind the acknowledgements: wait until it
	// has evaluated this run's readings.
	fmt.Fprintln(stdout, "waiting for Tend's rule engine to evaluate every reading")
	if err := api.WaitEvaluated(ctx, evaluatedBefore+float64(rep.Readings), 10*time.Second); err != nil {
		fmt.Fprintf(stdout, "warning: %v; alarms may be missing\n", err)
	}
	// An in-process Tend stamps alarms with the shared virtual clock; a
	// running one with its own, which the run's timeline maps.
	toVirtual := rep.Virtual
	if clock != nil {
		toVirtual = func(t time.Time) time.Time { return t }
	}
	alarms, err := api.Alarms(ctx, ps, toVirtual)
	if err != nil {
		return fail(1, "read the alarm history: %v", err)
	}
	ev := sim.Evaluate(sim.EvalInput{Truth: rep.Truth, Alarms: alarms, Patients: len(ps), Start: rep.Start, End: rep.End, Grace: *grace})
	fmt.Fprintln(stdout)
	if err := ev.Write(stdout); err != nil {
		return fail(1, "%v", err)
	}
	return 0
}

// parseScenarioFlag reads a scenario file when the flag names one, else the
// name=rate list.
func parseScenarioFlag(v string) ([]sim.ScenarioSpec, error) {
	if strings.HasSuffix(v, ".json") {
		b, err := os.ReadFile(v)
		if err != nil {
			return nil, err
		}
		specs, err := sim.ParseScenarioFile(b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", v, err)
		}
		return specs, nil
	}
	return sim.ParseScenarioList(v)
}

// target is where a running Tend listens.
type target struct{ http, mqtt, mllp, token string }

// fill takes the addresses the flags left empty from DIR/listen.json.
func (t *target) fill(dir string) error {
	if dir == "" {
		return nil
	}
	b, err := os.ReadFile(filepath.Join(dir, "listen.json"))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("--data %s: no listen.json: is Tend running with that data directory?", dir)
		}
		return fmt.Errorf("--data: %w", err)
	}
	var a node.Addrs
	if err := json.Unmarshal(b, &a); err != nil {
		return fmt.Errorf("--data %s: listen.json: %w", dir, err)
	}
	if t.http == "" {
		t.http = a.HTTP
	}
	if t.mqtt == "" {
		t.mqtt = a.MQTT
	}
	if t.mllp == "" {
		t.mllp = a.MLLP
	}
	if t.http == "" {
		return fmt.Errorf("--data %s: Tend's HTTP listener is off; the simulator needs it to register devices", dir)
	}
	return nil
}

// startDemo seeds the demo organisation and runs the simulator against
// the node until ctx ends; the channel closes when it has stopped.
func startDemo(ctx context.Context, on bool, n *node.Node, dataDir string, console io.Writer, log *slog.Logger) <-chan struct{} {
	done := make(chan struct{})
	if !on {
		close(done)
		return done
	}
	a := n.Addrs()
	go func() {
		defer close(done)
		err := demo.Run(ctx, demo.Config{Store: n.Store(), HTTPAddr: a.HTTP, MQTTAddr: a.MQTT, DataDir: dataDir, Console: console, Logger: log})
		if err != nil && ctx.Err() == nil {
			log.Error("demo stopped", "err", err)
		}
	}()
	return done
}
