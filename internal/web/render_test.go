package web

import (
	"bytes"
	"context"
	"crypto/sha256"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tendhealth/tend/internal/alarm"
	"github.com/tendhealth/tend/internal/codes"
	"github.com/tendhealth/tend/internal/news2"
	"github.com/tendhealth/tend/internal/reading"
	"github.com/tendhealth/tend/internal/rules"
	"github.com/tendhealth/tend/internal/store"
)

var update = flag.Bool("update", false, "rewrite golden files")

// TestTileGolden pins the markup of a tile: a hostile name, a stale
// value, a blood-pressure panel, NEWS2 and open alarms in urgency order.
func TestTileGolden(t *testing.T) {
	now := epoch
	p := store.Patient{ID: "p1", Resource: []byte(`{"resourceType":"Patient","name":[{"text":"<b>Bold</b> & \"Co\""}]}`),
		Identifiers: []store.Identifier{{Value: "MRN-1"}}}
	rd := func(code string, v float64, unit string, age time.Duration) reading.Reading {
		return reading.Reading{Patient: "p1", Device: "d1", Code: code, Value: v, HasValue: true, Unit: unit, Time: now.Add(-age)}
	}
	latest := map[string]reading.Reading{
		codes.HeartRate:        rd(codes.HeartRate, 131, "/min", 5*time.Second),
		codes.OxygenSaturation: rd(codes.OxygenSaturation, 91, "%", 5*time.Second),
		codes.RespiratoryRate:  rd(codes.RespiratoryRate, 22, "/min", 20*time.Minute), // stale
		codes.BodyTemperature:  rd(codes.BodyTemperature, 38.45, "Cel", time.Minute),
		codes.Battery:          rd(codes.Battery, 9, "%", time.Minute),
		codes.BloodPressurePanel: {Patient: "p1", Device: "d1", Code: codes.BloodPressurePanel, Unit: "mm[Hg]", Time: now.Add(-2 * time.Minute),
			Components: []reading.Component{{Code: codes.SystolicBP, Value: 95, Unit: "mm[Hg]"}, {Code: codes.DiastolicBP, Value: 60, Unit: "mm[Hg]"}}},
	}
	open := []alarm.Alarm{
		{ID: "a1", Patient: "p1", State: alarm.Acknowledged, Priority: rules.PriorityMedium, Name: "HR high", Raised: now.Add(-time.Hour)},
		{ID: "a2", Patient: "p1", State: alarm.Active, Priority: rules.PriorityHigh, Name: "<i>SpO2</i> low", Raised: now.Add(-time.Minute)},
	}
	row := newRow(p, latest, open, news2.Scale1, 15*time.Minute)
	h, err := New(Config{Store: nil, SessionKey: bytes.Repeat([]byte("k"), 32)})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := h.renderPart(&buf, "tile", tileData{Row: row.view(now), Now: now}); err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "tile.golden.html")
	if *update {
		if err := os.WriteFile(golden, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(want), buf.String()); diff != "" {
		t.Errorf("tile differs from %s (-want +got; run with -update to accept):\n%s", golden, diff)
	}
	if strings.Contains(buf.String(), "<b>Bold") || strings.Contains(buf.String(), "<i>SpO2") {
		t.Error("data became markup")
	}
}

// TestLatestCacheFollowsTheHub: once a page has loaded a patient, readings
// from the hub update what the next page shows without a query, and a
// dropped subscription empties the cache.
func TestLatestCacheFollowsTheHub(t *testing.T) {
	f := newFixture(t)
	f.patient(t, "p1", "Pat One")
	f.readings(t, vitalReading("p1", codes.HeartRate, 70, epoch))
	c := f.h.latest
	// Many pages asking at once share one load and all see the value.
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if got, err := c.latest(context.Background(), "p1"); err != nil || got[codes.HeartRate].Value != 70 {
				t.Errorf("concurrent load: %v %v", got, err)
			}
		}()
	}
	wg.Wait()
	got, err := c.latest(context.Background(), "p1")
	if err != nil || got[codes.HeartRate].Value != 70 {
		t.Fatalf("first load: %v %v", got, err)
	}
	if _, err := c.latest(context.Background(), "nobody"); err != nil {
		t.Errorf("a patient without readings: %v", err)
	}
	// Only on the hub, not in the store: proves the cache took it.
	publishReading(f.hub, vitalReading("p1", codes.HeartRate, 99, epoch.Add(time.Second)))
	publishReading(f.hub, vitalReading("p1", codes.HeartRate, 50, epoch.Add(-time.Second))) // older: ignored
	deadline := time.Now().Add(5 * time.Second)
	for {
		got, _ = c.latest(context.Background(), "p1")
		if got[codes.HeartRate].Value == 99 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the cache did not follow the hub: %v", got[codes.HeartRate].Value)
		}
		time.Sleep(10 * time.Millisecond)
	}
	c.close()
	got, _ = c.latest(context.Background(), "p1")
	if got[codes.HeartRate].Value != 70 {
		t.Errorf("after the subscription ended the cache still serves %v, want the stored 70", got[codes.HeartRate].Value)
	}
}

// TestVendoredAssetsArePinned: every vendored browser file is the one
// DEPENDENCIES.md records (by SHA-256), so an upgrade cannot slip in
// unrecorded.
func TestVendoredAssetsArePinned(t *testing.T) {
	deps, err := os.ReadFile(filepath.Join("..", "..", "DEPENDENCIES.md"))
	if err != nil {
		t.Fatal(err)
	}
	entries, err := assetFS.ReadDir("assets/vendor")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".LICENSE") {
			continue
		}
		b, err := assetFS.ReadFile("assets/vendor/" + e.Name())
		if err != nil {
			t.Fatal(err)
		}
		sum := fmt.Sprintf("%x", sha256.Sum256(b))
		if !bytes.Contains(deps, []byte(sum)) {
			t.Errorf("assets/vendor/%s (sha256 %s) is not recorded in DEPENDENCIES.md", e.Name(), sum)
		}
		n++
	}
	if n < 4 {
		t.Errorf("only %d vendored files", n)
	}
}
