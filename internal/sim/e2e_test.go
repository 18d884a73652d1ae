package sim_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tendhealth/tend/internal/node"
	"github.com/tendhealth/tend/internal/sim"
)

const token = "sim-test-admin-token-0123456789"

// One short run against a real node sharing the simulator's virtual clock:
// 20 virtual minutes of three ward patients, one hypoxic, delivered over
// MQTT with each device's own secret, faster than real time; Tend's alarm
// history must show the hypoxia.
func TestEndToEndDetectsHypoxia(t *testing.T) {
	// Over MQTT as the monitors' own connections, and over MLLP as a
	// monitor gateway sending HL7 ORU^R01 (device status then over MQTT).
	for _, proto := range []string{"mqtt", "mllp"} {
		t.Run(proto, func(t *testing.T) { detectsHypoxia(t, proto) })
	}
}

func detectsHypoxia(t *testing.T, proto string) {
	start := time.Now().UTC().Truncate(time.Second)
	clock := sim.NewVirtualClock(start)
	dir := t.TempDir()
	n := node.New(node.Config{DataDir: dir, HTTPAddr: "127.0.0.1:0", MQTTAddr: "127.0.0.1:0", MLLPAddr: "127.0.0.1:0",
		BootstrapToken: token, Now: clock.Now, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Console: io.Discard})
	ctx := context.Background()
	if err := n.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	var addrs node.Addrs
	b, _ := os.ReadFile(filepath.Join(dir, "listen.json"))
	if err := json.Unmarshal(b, &addrs); err != nil {
		t.Fatal(err)
	}
	api := &sim.API{Base: "http://" + addrs.HTTP, Token: token}
	ps := sim.Population(3, 0, "", 1)
	if err := api.Register(ctx, ps, "e2e-", 4); err != nil {
		t.Fatal(err)
	}
	mq := &sim.MQTTSender{Addr: addrs.MQTT}
	defer mq.Close()
	var snd sim.Sender = mq
	if proto == "mllp" {
		hl := &sim.MLLPSender{Addr: addrs.MLLP, Fallback: mq, Now: clock.Now}
		defer hl.Close()
		snd = hl
	}
	rep, err := sim.Run(ctx, sim.Config{Patients: ps, Seed: 1, Start: start, Duration: 20 * time.Minute, Sender: snd, Clock: clock,
		Scenarios: []sim.ScenarioSpec{{Name: sim.Hypoxia, Share: 0.3, At: 2 * time.Minute, Duration: 15 * time.Minute}}})
	if err != nil {
		t.Fatal(err)
	}
	if rep.UndeliveredMessages > 0 || rep.Readings < 3*20*60*2 {
		t.Fatalf("delivered %d readings, %d messages undelivered: %s", rep.Readings, rep.UndeliveredMessages, rep.FirstError)
	}
	var hypoxic string
	for _, e := range rep.Truth {
		if e.Scenario == sim.Hypoxia {
			hypoxic = e.Patient
		}
	}
	if hypoxic == "" {
		t.Fatal("no hypoxia in the ground truth")
	}
	// The evaluator runs behind the acknowledgements; wait until it has
	// caught up with the hypoxic patient.
	var alarms []sim.Alarm
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if alarms, err = api.Alarms(ctx, ps, func(t time.Time) time.Time { return t }); err != nil {
			t.Fatal(err)
		}
		if hasRule(alarms, hypoxic, "spo2-critical") {
			break
		}
	}
	ev := sim.Evaluate(sim.EvalInput{Truth: rep.Truth, Alarms: alarms, Patients: len(ps), Start: rep.Start, End: rep.End, Grace: 5 * time.Minute})
	var out strings.Builder
	ev.Write(&out)
	t.Logf("evaluation:\n%s", out.String())
	found := false
	for _, r := range ev.Scenarios {
		if r.Scenario == sim.Hypoxia {
			found = true
			if r.Episodes != 1 || r.Detected != 1 || r.TTDMedian <= 0 || r.TTDMedian > 10*time.Minute {
				t.Errorf("hypoxia: %+v", r)
			}
		}
	}
	if !found {
		t.Errorf("no hypoxia result")
	}
	if proto == "mllp" {
		// The readings came in over HL7, not MQTT.
		latest, err := n.Store().Latest(ctx, hypoxic)
		if err != nil || len(latest) == 0 {
			t.Fatalf("latest of %s: %v %v", hypoxic, latest, err)
		}
		for _, l := range latest {
			if l.Code == "59408-5" && l.Source != "hl7" {
				t.Errorf("SpO2 arrived over %q, want hl7", l.Source)
			}
		}
		return
	}
	// The HTTP sender says why Tend refused: here a wrong secret.
	bad := &sim.HTTPSender{Base: "http://" + addrs.HTTP}
	if err := bad.Send(ctx, &sim.Device{ID: ps[0].Devices[0].ID, Secret: "wrong"}, []byte(`[]`)); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("wrong secret over HTTP: %v", err)
	}
}

func hasRule(as []sim.Alarm, patient, rule string) bool {
	for _, a := range as {
		if a.Patient == patient && a.Rule == rule {
			return true
		}
	}
	return false
}
