// Package demo seeds a demonstration organisation into a running node and
// drives it with the simulator, so that a newcomer sees Tend at work with
// one command (`tend serve --demo`): users with printed one-time
// passwords, a ward of 30 patients with bedside monitors, a home
// remote-monitoring caseload of 50 with wearables, cuffs, scales and
// glucose sensors, and scenarios that raise alarms within minutes.
//
// Seeding is idempotent: a second start finds the patients, devices and
// users by their identifiers and reuses them. Devices get fresh secrets at
// every start, held only in memory, because Tend keeps only their hashes.
package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/tendhealth/tend/internal/auth"
	"github.com/tendhealth/tend/internal/sim"
	"github.com/tendhealth/tend/internal/store"
)

// Size of the demo organisation.
const (
	WardPatients = 30
	HomePatients = 50
)

// IdentifierSystem marks the demo's patients and devices.
const IdentifierSystem = "urn:tend:demo"

// seed fixes the demo population, so a second start plans the same fleet.
const seed = 2026

// Config is what the demo needs of the running node.
type Config struct {
	Store    store.Store
	HTTPAddr string // the node's HTTP listener, host:port
	MQTTAddr string // the node's MQTT listener; "" sends over HTTP
	DataDir  string // the ground-truth log goes here
	Console  io.Writer
	Logger   *slog.Logger
	Now      func() time.Time
}

// user is one demo login, with the role that decides what it sees: the
// clinician and nurse see the patients of their care teams, the caregiver
// only the home patients who consented.
type user struct {
	id, name string
	role     store.Role
	what     string
}

var users = []user{
	{"clinician", "Dr Demo Clinician", store.RoleClinician, "care teams ward and home: patients, trends, alarms"},
	{"nurse", "Demo Nurse", store.RoleNurse, "care team ward: alarm board, acknowledge and resolve"},
	{"caregiver", "Demo Caregiver", store.RoleCaregiver, fmt.Sprintf("%d home patients who consented: falls, glucose, weight", consentingPatients)},
	{"admin", "Demo Administrator", store.RoleAdmin, "devices, users, care teams, rules"},
}

// Care teams of the demo and who is in them; patients join by setting.
var teams = []struct {
	id, name, setting string
	members           []string
}{
	{"demo-ward", "Ward", sim.Ward, []string{"clinician", "nurse"}},
	{"demo-home", "Home monitoring", sim.Home, []string{"clinician"}},
}

// consentingPatients is how many home patients gave the demo caregiver
// access to their data and alarms.
const consentingPatients = 5

// Scenarios start a few episodes within minutes of the start, then keep
// a trickle of new ones coming.
var Scenarios = []sim.ScenarioSpec{
	{Name: sim.Hypoxia, Share: 0.1, At: time.Minute, Rate: 0.3},
	{Name: sim.FallNoResponse, Share: 0.05, At: 2 * time.Minute, Rate: 0.1},
	{Name: sim.AtrialFibrillation, Share: 0.05, At: 3 * time.Minute, Rate: 0.1},
	{Name: sim.HypertensiveCrisis, Share: 0.05, At: 4 * time.Minute, Rate: 0.1},
	{Name: sim.HypoglycaemiaFast, Share: 0.1, At: 5 * time.Minute, Rate: 0.2},
	{Name: sim.Sepsis, Share: 0.05, At: 0, Rate: 0.05},
	{Name: sim.BatteryDrain, Rate: 0.1},
	{Name: sim.ClockSkew, Rate: 0.05},
	{Name: sim.HFWeightGain, Rate: 0.05},
	{Name: sim.MissedDoses, Rate: 0.3},
}

// Run seeds the organisation and runs the simulator in real time until
// ctx ends.
func Run(ctx context.Context, cfg Config) error {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.HTTPAddr == "" {
		return errors.New("demo: needs the HTTP listener (do not use --http off with --demo)")
	}
	ps, err := Seed(ctx, cfg)
	if err != nil {
		return err
	}
	var sender sim.Sender = &sim.HTTPSender{Base: "http://" + cfg.HTTPAddr}
	if cfg.MQTTAddr != "" {
		m := &sim.MQTTSender{Addr: cfg.MQTTAddr}
		defer m.Close()
		sender = m
	}
	truth, err := os.OpenFile(filepath.Join(cfg.DataDir, "demo-truth.jsonl"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("demo: ground-truth log: %w", err)
	}
	defer truth.Close()
	rep, err := sim.Run(ctx, sim.Config{Patients: ps, Seed: uint64(cfg.Now().Unix()), Start: cfg.Now(), Duration: 365 * 24 * time.Hour,
		Speed: 1, Scenarios: Scenarios, Sender: sender, Truth: truth, Logger: cfg.Logger, Now: time.Now})
	cfg.Logger.Info("demo simulator stopped", "readings", rep.Readings, "undelivered_readings", rep.UndeliveredReadings)
	if err != nil {
		return fmt.Errorf("demo simulator: %w", err)
	}
	return nil
}

// Seed creates (or finds) the demo users, patients and devices, issues
// the devices new secrets and prints the dashboard URL and logins.
func Seed(ctx context.Context, cfg Config) ([]sim.Patient, error) {
	now := cfg.Now().UTC()
	// The demo registers through Tend's own API, with a token of its own.
	tok := auth.NewSecret()
	if err := cfg.Store.PutToken(ctx, store.Token{Hash: auth.HashSecret(tok), Role: store.RoleAdmin, Subject: "demo", Created: now}); err != nil {
		return nil, fmt.Errorf("demo: register its API token: %w", err)
	}
	api := &sim.API{Base: "http://" + cfg.HTTPAddr, Token: tok}
	ps := sim.Population(WardPatients, HomePatients, "", seed)
	created := 0
	for i := range ps {
		n, err := seedPatient(ctx, cfg.Store, api, &ps[i])
		if err != nil {
			return nil, fmt.Errorf("demo: patient %s: %w", ps[i].Label, err)
		}
		created += n
	}
	logins, err := seedUsers(ctx, cfg.Store, now)
	if err != nil {
		return nil, err
	}
	if err := seedAccess(ctx, cfg.Store, ps, now); err != nil {
		return nil, err
	}
	w := cfg.Console
	fmt.Fprintf(w, "\nTend demo: %d ward and %d home patients", WardPatients, HomePatients)
	if created == 0 {
		fmt.Fprintf(w, " (reused from the data directory)")
	}
	fmt.Fprintf(w, ", simulated devices sending in real time.\n  dashboard: http://%s/\n  logins:\n", cfg.HTTPAddr)
	for _, l := range logins {
		fmt.Fprintf(w, "    %-10s %-33s %s\n", l[0], l[1], l[2])
	}
	fmt.Fprintf(w, "  The first alarms (hypoxia, a fall, atrial fibrillation, …) come within about five minutes.\n\n")
	return ps, nil
}

// seedUsers creates the demo logins that do not exist yet; a password is
// shown once, when its account is created.
func seedUsers(ctx context.Context, s store.Store, now time.Time) ([][3]string, error) {
	var out [][3]string
	for _, u := range users {
		_, err := s.User(ctx, u.id)
		switch {
		case err == nil:
			out = append(out, [3]string{u.id, "(password printed at first start)", u.what})
			continue
		case !errors.Is(err, store.ErrNotFound):
			return nil, fmt.Errorf("demo: look up user %s: %w", u.id, err)
		}
		password := auth.NewSecret()[:16]
		if err := s.CreateUser(ctx, store.User{ID: u.id, Name: u.name, Role: u.role, PasswordHash: auth.HashPassword(password), Created: now}); err != nil {
			return nil, fmt.Errorf("demo: create user %s: %w", u.id, err)
		}
		out = append(out, [3]string{u.id, "password " + password, u.what})
	}
	return out, nil
}

// seedAccess puts the patients in their care teams, has the first home
// patients consent to the caregiver, once; a second start finds it all in
// place.
func seedAccess(ctx context.Context, s store.Store, ps []sim.Patient, now time.Time) error {
	for _, t := range teams {
		err := s.CreateCareTeam(ctx, store.CareTeam{ID: t.id, Org: store.DefaultOrg, Name: t.name, Created: now})
		if err != nil && !errors.Is(err, store.ErrConflict) {
			return fmt.Errorf("demo: care team %s: %w", t.id, err)
		}
		for _, m := range t.members {
			if err := s.SetCareTeamMember(ctx, t.id, m, true); err != nil {
				return fmt.Errorf("demo: care team %s: %w", t.id, err)
			}
		}
		for _, p := range ps {
			if p.Setting == t.setting {
				if err := s.SetCareTeamPatient(ctx, t.id, p.ID, true); err != nil {
					return fmt.Errorf("demo: care team %s: %w", t.id, err)
				}
			}
		}
	}
	active, err := s.ActiveConsents(ctx, "caregiver", now)
	if err != nil {
		return fmt.Errorf("demo: consents: %w", err)
	}
	if len(active) == 0 {
		n := 0
		for _, p := range ps {
			if p.Setting != sim.Home || n == consentingPatients {
				continue
			}
			c := store.Consent{ID: "demo-consent-" + strings.ToLower(p.Label), Org: store.DefaultOrg, Patient: p.ID, Grantee: "caregiver",
				Scope: store.ConsentReadAlarms, Start: now, Created: now}
			if err := s.CreateConsent(ctx, c); err != nil && !errors.Is(err, store.ErrConflict) {
				return fmt.Errorf("demo: consent: %w", err)
			}
			n++
		}
	}
	return nil
}

// seedPatient finds or registers one patient and their devices and gives
// every device a new secret; it returns how many records it created.
func seedPatient(ctx context.Context, s store.Store, api *sim.API, p *sim.Patient) (int, error) {
	created := 0
	found, _, err := s.Patients(ctx, &store.Identifier{System: IdentifierSystem, Value: p.Label}, 1, 0)
	if err != nil {
		return 0, fmt.Errorf("find patient: %w", err)
	}
	if len(found) > 0 {
		p.ID = found[0].ID
	} else {
		family, given := name(p.Label)
		if p.ID, err = api.CreatePatient(ctx, IdentifierSystem, p.Label, family, given); err != nil {
			return 0, err
		}
		created++
		if p.Setting != sim.Ward {
			if err := api.SetCareSetting(ctx, p.ID, p.Setting); err != nil {
				return 0, err
			}
		}
	}
	for j := range p.Devices {
		d := &p.Devices[j]
		ident := p.Label + "-" + string(d.Kind)
		dev, err := s.DeviceByIdentifier(ctx, store.Identifier{System: IdentifierSystem, Value: ident})
		switch {
		case err == nil && dev.Patient == p.ID:
			d.ID = dev.ID
		case err == nil || errors.Is(err, store.ErrNotFound):
			// Absent, or rebound by someone meanwhile: the demo makes its own.
			if d.ID, err = api.CreateDevice(ctx, IdentifierSystem, ident, p.ID, d.Kind); err != nil {
				return 0, err
			}
			created++
		default:
			return 0, fmt.Errorf("find device: %w", err)
		}
		if d.Secret, err = api.IssueSecret(ctx, d.ID); err != nil {
			return 0, err
		}
	}
	return created, nil
}

// name gives a demo patient an obviously synthetic but readable name.
func name(label string) (family, given string) {
	families := []string{"Ashdown", "Birch", "Calder", "Dunmore", "Ellery", "Fairlie", "Garside", "Holt", "Ingram", "Jessop", "Kirkby", "Lowther", "Marsh"}
	givens := []string{"Ada", "Bram", "Cora", "Dev", "Elin", "Finn", "Greta", "Hugo", "Iris", "Jonah", "Kit", "Lena", "Milo", "Nell", "Otto", "Pia", "Rhys"}
	h := 0
	for _, c := range label {
		h = h*31 + int(c)
	}
	return families[h%len(families)], givens[(h/7)%len(givens)] + " (demo " + strings.ToLower(label) + ")"
}
