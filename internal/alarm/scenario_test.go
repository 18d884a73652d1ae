package alarm_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tendhealth/tend/internal/alarm"
	"github.com/tendhealth/tend/internal/alarmdb"
	"github.com/tendhealth/tend/internal/codes"
	"github.com/tendhealth/tend/internal/notify"
	"github.com/tendhealth/tend/internal/reading"
	"github.com/tendhealth/tend/internal/rules"
)

// The scenario format is modelled on Prometheus's promqltest: a script of
// clock steps, readings and people's actions, with the alarm transitions
// and notifications each step must produce. See testdata/scenarios/README.md.
func TestScenarios(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "scenarios", "*.scenario"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no scenarios: %v", err)
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".scenario"), func(t *testing.T) {
			runScenario(t, f)
		})
	}
}

var epoch = time.Date(2026, 1, 5, 8, 0, 0, 0, time.UTC)

type scenario struct {
	t        *testing.T
	ctx      context.Context
	now      time.Time
	seq      uint64
	db       *alarmdb.DB
	profiles *alarm.Profiles
	engine   *rules.Engine
	svc      *alarm.Service
	disp     *alarm.Dispatcher
	mu       sync.Mutex // out and failing: the dispatcher sends from several goroutines
	out      []string
	failing  map[string]error // recipient → error to return
}

func (s *scenario) emit(line string) {
	s.mu.Lock()
	s.out = append(s.out, line)
	s.mu.Unlock()
}

func newScenario(t *testing.T) *scenario {
	s := &scenario{t: t, ctx: context.Background(), now: epoch, failing: map[string]error{}}
	db, err := alarmdb.Open(filepath.Join(t.TempDir(), "alarms.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	s.db = db
	clock := func() time.Time { return s.now }
	s.profiles = &alarm.Profiles{Store: db, Now: clock}
	s.engine = rules.NewEngine(func(patient string) []rules.Rule {
		rs, err := s.profiles.Rules(s.ctx, patient)
		if err != nil {
			t.Fatalf("rules of %s: %v", patient, err)
		}
		return rs
	})
	s.svc = alarm.NewService(alarm.Config{Store: db, Escalation: s.profiles.Escalation, Now: clock,
		OnChange: func(a alarm.Alarm, action string) { s.emit(describe(a, action)) }})
	s.disp = &alarm.Dispatcher{Store: db, Service: s.svc, Now: clock, MaxAttempts: 3,
		Resolve: func(_ context.Context, r string) (notify.Recipient, error) {
			kind, addr, _ := strings.Cut(r, ":")
			return notify.Recipient{Kind: kind, Address: addr}, nil
		},
		Sender: notify.SenderFunc(func(_ context.Context, to notify.Recipient, m notify.Message) (notify.Receipt, error) {
			r := to.Kind + ":" + to.Address
			var body struct {
				Alarm alarm.Alarm `json:"alarm"`
			}
			if err := json.Unmarshal(m.Body, &body); err != nil {
				t.Fatalf("notification body: %v", err)
			}
			s.mu.Lock()
			err := s.failing[r]
			s.mu.Unlock()
			if err != nil {
				return notify.Receipt{}, err
			}
			s.emit(fmt.Sprintf("notify %s %s %s", r, m.Event, body.Alarm.Rule))
			return notify.Receipt{At: s.now, Detail: "ok"}, nil
		})}
	return s
}

func describe(a alarm.Alarm, action string) string {
	switch action {
	case "raised", "priority_raised":
		return fmt.Sprintf("%s %s %s priority=%s", action, a.Rule, a.Patient, a.Priority)
	case "escalated":
		return fmt.Sprintf("%s %s %s tier=%d", action, a.Rule, a.Patient, a.Tier+1)
	case "acknowledged":
		return fmt.Sprintf("%s %s %s by=%s", action, a.Rule, a.Patient, a.AckedBy)
	case "resolved":
		return fmt.Sprintf("%s %s %s by=%s", action, a.Rule, a.Patient, a.ResolvedBy)
	}
	return fmt.Sprintf("%s %s %s", action, a.Rule, a.Patient)
}

func runScenario(t *testing.T, path string) {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s := newScenario(t)
	var expect []string
	expectLine := 0
	check := func() {
		got := s.out
		s.out = nil
		want := expect
		expect = nil
		if slices.Equal(want, []string{"none"}) {
			want = nil
		}
		g, w := slices.Clone(got), slices.Clone(want)
		sort.Strings(g)
		sort.Strings(w)
		if !slices.Equal(g, w) {
			t.Errorf("%s:%d: at +%s\n got:\n\t%s\nwant:\n\t%s", path, expectLine, s.now.Sub(epoch), strings.Join(g, "\n\t"), strings.Join(w, "\n\t"))
		}
	}
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if i := strings.Index(line, " #"); i >= 0 {
			line = strings.TrimSpace(line[:i])
		}
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		cmd, rest, _ := strings.Cut(line, " ")
		if cmd == "expect" {
			if expect == nil {
				expectLine = n
			}
			expect = append(expect, strings.Join(strings.Fields(rest), " "))
			continue
		}
		if expect != nil {
			check()
		}
		if err := s.do(cmd, rest); err != nil {
			t.Fatalf("%s:%d: %s: %v", path, n, line, err)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	check() // whatever the last step produced must have been expected
}

func (s *scenario) do(cmd, rest string) error {
	args := strings.Fields(rest)
	kv := map[string]string{}
	var pos []string
	for _, a := range args {
		if k, v, ok := strings.Cut(a, "="); ok {
			kv[k] = v
		} else {
			pos = append(pos, a)
		}
	}
	switch cmd {
	case "at": // at DURATION: advance the clock to epoch+DURATION, run timers
		d, err := time.ParseDuration(rest)
		if err != nil {
			return err
		}
		next := epoch.Add(d)
		if next.Before(s.now) {
			return fmt.Errorf("time goes backwards")
		}
		s.now = next
		return s.timers()
	case "read": // read PATIENT DEVICE CODE VALUE [t=OFFSET]: one reading at now(+offset)
		if len(pos) != 4 {
			return errors.New("want: read PATIENT DEVICE CODE VALUE [t=OFFSET]")
		}
		c, ok := codes.Lookup(pos[2])
		if !ok {
			return fmt.Errorf("unknown code %q", pos[2])
		}
		v, err := strconv.ParseFloat(pos[3], 64)
		if err != nil {
			return err
		}
		at := s.now
		if off, ok := kv["t"]; ok {
			d, err := time.ParseDuration(off)
			if err != nil {
				return err
			}
			at = at.Add(d)
		}
		r := reading.Reading{Patient: pos[0], Device: pos[1], Code: c.LOINC, Unit: c.Unit, Time: at, Received: s.now, Source: "test"}
		if c.LOINC == codes.SystolicBP || c.LOINC == codes.DiastolicBP {
			r.Code = codes.BloodPressurePanel
			r.Components = []reading.Component{{Code: c.LOINC, Value: v, Unit: c.Unit}}
		} else {
			r.Value, r.HasValue = v, true
		}
		s.seq++
		var out rules.Output
		s.engine.Observe(r, s.seq, &out)
		for _, d := range out.Derived {
			s.emit(fmt.Sprintf("score %s %g", d.Patient, d.Value))
		}
		if err := s.svc.Apply(s.ctx, alarm.Checkpoint{Name: "scenario", Applied: s.seq}, out.Events); err != nil {
			return err
		}
		return s.dispatch()
	case "doc": // doc SCOPE KIND JSON: store a rules/escalation document
		parts := strings.SplitN(rest, " ", 3)
		if len(parts) != 3 {
			return errors.New("want: doc SCOPE KIND JSON")
		}
		if err := s.db.PutDoc(s.ctx, &alarm.Doc{Scope: parts[0], Kind: parts[1], Body: []byte(parts[2]), Author: "test", At: s.now}); err != nil {
			return err
		}
		s.profiles.Invalidate()
		s.engine.Invalidate("")
		return nil
	case "ack", "resolve", "snooze": // ack RULE PATIENT by=WHO [reason=…] [for=5m]
		if len(pos) != 2 {
			return fmt.Errorf("want: %s RULE PATIENT by=WHO", cmd)
		}
		id, err := s.open(pos[0], pos[1])
		if err != nil {
			return err
		}
		act := alarm.Action{By: kv["by"], Reason: strings.ReplaceAll(kv["reason"], "_", " ")}
		if f, ok := kv["for"]; ok {
			if act.For, err = time.ParseDuration(f); err != nil {
				return err
			}
		}
		switch cmd {
		case "ack":
			_, err = s.svc.Acknowledge(s.ctx, id, act)
		case "resolve":
			_, err = s.svc.Resolve(s.ctx, id, act)
		case "snooze":
			_, err = s.svc.Snooze(s.ctx, id, act)
		}
		if err != nil {
			s.emit("refused " + cmd + " " + pos[0])
			return nil
		}
		return s.dispatch()
	case "external": // external PATIENT DEVICE CODE PRIORITY active|ended: a device-reported alarm (HL7 PCD-04)
		if len(pos) != 5 {
			return errors.New("want: external PATIENT DEVICE CODE PRIORITY active|ended")
		}
		err := s.svc.RaiseExternal(s.ctx, alarm.External{Patient: pos[0], Device: pos[1], Source: "hl7", Code: pos[2],
			Text: "device alarm " + pos[2], Priority: rules.Priority(pos[3]), Active: pos[4] == "active", Time: s.now})
		if err != nil {
			s.emit("refused external " + pos[2])
			return nil
		}
		return s.dispatch()
	case "fail": // fail RECIPIENT permanent|retry|off
		if len(pos) != 2 {
			return errors.New("want: fail RECIPIENT permanent|retry|off")
		}
		switch pos[1] {
		case "permanent":
			s.failing[pos[0]] = notify.Permanent(errors.New("410 gone"))
		case "retry":
			s.failing[pos[0]] = errors.New("503 unavailable")
		case "off":
			delete(s.failing, pos[0])
		default:
			return fmt.Errorf("unknown failure %q", pos[1])
		}
		return nil
	case "state": // state RULE PATIENT STATE [condition=true|false]: check an episode
		if len(pos) != 3 {
			return errors.New("want: state RULE PATIENT STATE")
		}
		as, err := s.db.Alarms(s.ctx, alarm.Filter{Patient: pos[1]})
		if err != nil {
			return err
		}
		for _, a := range as {
			if a.Rule == pos[0] {
				if string(a.State) != pos[2] {
					return fmt.Errorf("%s is %s, want %s", pos[0], a.State, pos[2])
				}
				if c, ok := kv["condition"]; ok && strconv.FormatBool(a.Condition) != c {
					return fmt.Errorf("%s condition_active=%v, want %s", pos[0], a.Condition, c)
				}
				return nil
			}
		}
		return fmt.Errorf("no alarm of rule %s for %s", pos[0], pos[1])
	}
	return fmt.Errorf("unknown command %q", cmd)
}

// timers runs what the passage of time drives: no-data checks,
// escalations and due deliveries.
func (s *scenario) timers() error {
	var out rules.Output
	s.engine.Tick(s.now, &out)
	if err := s.svc.Apply(s.ctx, alarm.Checkpoint{}, out.Events); err != nil {
		return err
	}
	if _, err := s.svc.Escalate(s.ctx); err != nil {
		return err
	}
	return s.dispatch()
}

// dispatch delivers until nothing is due, as the dispatcher's loop does
// when kicked: a failure can enqueue a notification-failure alarm's own
// deliveries.
func (s *scenario) dispatch() error {
	for i := 0; i < 10; i++ {
		n, err := s.disp.RunOnce(s.ctx)
		if err != nil || n == 0 {
			return err
		}
	}
	return errors.New("deliveries keep coming due")
}

// open finds the newest episode of a rule for a patient.
func (s *scenario) open(rule, patient string) (string, error) {
	as, err := s.db.Alarms(s.ctx, alarm.Filter{Patient: patient})
	if err != nil {
		return "", err
	}
	for _, a := range as {
		if a.Rule == rule {
			return a.ID, nil
		}
	}
	return "", fmt.Errorf("no alarm of rule %s for %s", rule, patient)
}
