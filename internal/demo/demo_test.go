package demo

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tendhealth/tend/internal/access"
	"github.com/tendhealth/tend/internal/auth"
	"github.com/tendhealth/tend/internal/node"
	"github.com/tendhealth/tend/internal/sim"
	"github.com/tendhealth/tend/internal/store"
)

const testToken = "demo-test-admin-token-0123456789"

func startNode(t *testing.T, dir string, now ...func() time.Time) (*node.Node, node.Addrs) {
	t.Helper()
	cfg := node.Config{DataDir: dir, HTTPAddr: "127.0.0.1:0", MQTTAddr: "127.0.0.1:0", MLLPAddr: node.Off,
		BootstrapToken: testToken, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Console: io.Discard}
	if len(now) > 0 {
		cfg.Now = now[0]
	}
	n := node.New(cfg)
	if err := n.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	var a node.Addrs
	b, _ := os.ReadFile(filepath.Join(dir, "listen.json"))
	if err := json.Unmarshal(b, &a); err != nil {
		t.Fatal(err)
	}
	return n, a
}

// A second start finds the organisation the first one seeded: the same
// patients and devices, no new passwords.
func TestSeedIsIdempotent(t *testing.T) {
	dir := t.TempDir()
	seedOnce := func() ([]sim.Patient, string) {
		n, a := startNode(t, dir)
		defer n.Close()
		var out strings.Builder
		ps, err := Seed(context.Background(), Config{Store: n.Store(), HTTPAddr: a.HTTP, MQTTAddr: a.MQTT, DataDir: dir, Console: &out, Now: time.Now})
		if err != nil {
			t.Fatal(err)
		}
		return ps, out.String()
	}
	first, out1 := seedOnce()
	if len(first) != WardPatients+HomePatients {
		t.Fatalf("%d patients", len(first))
	}
	passwords := regexp.MustCompile(`(clinician|nurse|caregiver|admin) +password (\S+)`).FindAllStringSubmatch(out1, -1)
	if len(passwords) != len(users) || !strings.Contains(out1, "dashboard: http://") {
		t.Errorf("first start printed:\n%s", out1)
	}
	second, out2 := seedOnce()
	if strings.Contains(out2, " password ") || !strings.Contains(out2, "reused") {
		t.Errorf("second start printed:\n%s", out2)
	}
	for i := range first {
		if first[i].ID == "" || first[i].ID != second[i].ID {
			t.Fatalf("patient %s: %q then %q", first[i].Label, first[i].ID, second[i].ID)
		}
		for j := range first[i].Devices {
			d1, d2 := first[i].Devices[j], second[i].Devices[j]
			if d1.ID == "" || d1.ID != d2.ID || d1.Secret == "" || d1.Secret == d2.Secret {
				t.Fatalf("patient %s device %s: %+v then %+v (want the same id, a new secret)", first[i].Label, d1.Kind, d1, d2)
			}
		}
	}
	// The logins have their roles, and each sees what its role allows:
	// the nurse the ward, the clinician ward and home, the caregiver the
	// consenting home patients.
	n, _ := startNode(t, dir)
	defer n.Close()
	ctx := context.Background()
	policy := access.New(n.Store(), time.Now)
	ward, home := 0, 0
	for _, p := range first {
		if p.Setting == sim.Ward {
			ward++
		} else {
			home++
		}
	}
	want := map[string]int{"clinician": ward + home, "nurse": ward, "caregiver": consentingPatients}
	for _, u := range users {
		got, err := n.Store().User(ctx, u.id)
		if err != nil || got.Role != u.role {
			t.Errorf("user %s: %+v %v, want role %s", u.id, got, err, u.role)
			continue
		}
		if u.role == store.RoleAdmin {
			continue
		}
		sc, err := policy.Scope(ctx, auth.Principal{Subject: got.ID, Role: string(got.Role), Org: got.Org})
		if err != nil {
			t.Fatal(err)
		}
		if len(sc.Patients) != want[u.id] {
			t.Errorf("%s sees %d patients, want %d", u.id, len(sc.Patients), want[u.id])
		}
	}
}

// Run seeds and drives the node: ward monitors' readings arrive.
func TestRunSendsReadings(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the demo in real time for several seconds")
	}
	dir := t.TempDir()
	n, a := startNode(t, dir)
	defer n.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Config{Store: n.Store(), HTTPAddr: a.HTTP, MQTTAddr: a.MQTT, DataDir: dir, Console: io.Discard})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	found, _, err := n.Store().Patients(context.Background(), &store.Identifier{System: IdentifierSystem, Value: "W01"}, 1, 0)
	for deadline := time.Now().Add(30 * time.Second); (err != nil || len(found) == 0) && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		found, _, err = n.Store().Patients(context.Background(), &store.Identifier{System: IdentifierSystem, Value: "W01"}, 1, 0)
	}
	if len(found) == 0 {
		t.Fatalf("W01 not seeded: %v", err)
	}
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		latest, err := n.Store().Latest(context.Background(), found[0].ID)
		if err == nil && len(latest) >= 2 {
			return
		}
	}
	t.Error("no readings from W01's monitor within 30 s")
}

// The demo promises its first alarms within about five minutes: run its
// scenarios for five virtual minutes, faster than real time.
func TestFirstAlarmsWithinFiveMinutes(t *testing.T) {
	start := time.Now().UTC().Truncate(time.Second)
	clock := sim.NewVirtualClock(start)
	dir := t.TempDir()
	n, a := startNode(t, dir, clock.Now)
	defer n.Close()
	ctx := context.Background()
	ps, err := Seed(ctx, Config{Store: n.Store(), HTTPAddr: a.HTTP, MQTTAddr: a.MQTT, DataDir: dir, Console: io.Discard, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	snd := &sim.MQTTSender{Addr: a.MQTT}
	defer snd.Close()
	rep, err := sim.Run(ctx, sim.Config{Patients: ps, Seed: 1, Start: clock.Now(), Duration: 5 * time.Minute, Scenarios: Scenarios, Sender: snd, Clock: clock})
	if err != nil || rep.UndeliveredMessages > 0 {
		t.Fatalf("%v; undelivered: %s", err, rep.FirstError)
	}
	api := &sim.API{Base: "http://" + a.HTTP, Token: testToken}
	var rules map[string]bool
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(300 * time.Millisecond) {
		alarms, err := api.Alarms(ctx, ps, func(t time.Time) time.Time { return t })
		if err != nil {
			t.Fatal(err)
		}
		rules = map[string]bool{}
		for _, al := range alarms {
			rules[al.Rule] = true
		}
		if rules["fall"] && (rules["spo2-critical"] || rules["spo2-low"]) {
			return
		}
	}
	t.Errorf("after five minutes: alarms %v; want a fall and a low SpO2", rules)
}
