package sim

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
)

// API registers simulated patients and devices through Tend's own HTTP API
// (FHIR Patient and Device, device credentials, the patient's care
// setting) with an admin token, and reads the alarm history back.
type API struct {
	Base   string // e.g. http://127.0.0.1:8080
	Token  string // admin API token
	Client *http.Client
}

// IdentifierSystem marks the patients and devices the simulator created.
const IdentifierSystem = "urn:tend:sim"

func (a *API) call(ctx context.Context, what, method, path string, body, out any, want ...int) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.Base+path, rd)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if body != nil {
		ct := "application/json"
		if strings.HasPrefix(path, "/fhir/") {
			ct = "application/fhir+json"
		}
		req.Header.Set("Content-Type", ct)
	}
	req.Header.Set("Authorization", "Bearer "+a.Token)
	hc := a.Client
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	ok := false
	for _, w := range want {
		ok = ok || resp.StatusCode == w
	}
	if !ok {
		msg := fmt.Sprintf("%s: %s", what, resp.Status)
		if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
			msg += " (an admin API token is needed)"
		}
		if d := problemDetail(data); d != "" {
			msg += ": " + d
		}
		return errors.New(msg)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("%s: unexpected answer: %w", what, err)
		}
	}
	return nil
}

// problemDetail pulls the human message out of a problem+json or FHIR
// OperationOutcome answer.
func problemDetail(body []byte) string {
	var v struct {
		Detail string `json:"detail"`
		Issue  []struct {
			Diagnostics string `json:"diagnostics"`
		} `json:"issue"`
	}
	if json.Unmarshal(body, &v) != nil {
		return clip(strings.TrimSpace(string(body)))
	}
	if v.Detail == "" && len(v.Issue) > 0 {
		return v.Issue[0].Diagnostics
	}
	return v.Detail
}

// FindPatient returns the id of the patient with the identifier, or "".
func (a *API) FindPatient(ctx context.Context, system, value string) (string, error) {
	var b struct {
		Entry []struct {
			Resource struct {
				ID string `json:"id"`
			} `json:"resource"`
		} `json:"entry"`
	}
	q := url.Values{"identifier": {system + "|" + value}}
	if err := a.call(ctx, "find patient", http.MethodGet, "/fhir/Patient?"+q.Encode(), nil, &b, http.StatusOK); err != nil {
		return "", err
	}
	if len(b.Entry) == 0 {
		return "", nil
	}
	return b.Entry[0].Resource.ID, nil
}

// Exists reports whether a FHIR resource (e.g. "Device/abc") exists.
func (a *API) Exists(ctx context.Context, ref string) (bool, error) {
	err := a.call(ctx, "read "+ref, http.MethodGet, "/fhir/"+ref, nil, nil, http.StatusOK)
	if err != nil && strings.Contains(err.Error(), "404") {
		return false, nil
	}
	return err == nil, err
}

// CreatePatient registers a patient with a synthetic name and returns its id.
func (a *API) CreatePatient(ctx context.Context, system, value, family, given string) (string, error) {
	var out struct{ ID string }
	body := map[string]any{"resourceType": "Patient",
		"identifier": []map[string]string{{"system": system, "value": value}},
		"name":       []map[string]any{{"family": family, "given": []string{given}}}}
	if err := a.call(ctx, "create patient", http.MethodPost, "/fhir/Patient", body, &out, http.StatusCreated); err != nil {
		return "", err
	}
	return out.ID, nil
}

// CreateDevice registers a device bound to patient and returns its id.
func (a *API) CreateDevice(ctx context.Context, system, value, patient string, kind Kind) (string, error) {
	var out struct{ ID string }
	body := map[string]any{"resourceType": "Device",
		"identifier":   []map[string]string{{"system": system, "value": value}},
		"manufacturer": "Tend simulator", "modelNumber": string(kind),
		"patient": map[string]string{"reference": "Patient/" + patient}}
	if err := a.call(ctx, "create device", http.MethodPost, "/fhir/Device", body, &out, http.StatusCreated); err != nil {
		return "", err
	}
	return out.ID, nil
}

// IssueSecret gives a device a new secret (the old one stops working).
func (a *API) IssueSecret(ctx context.Context, device string) (string, error) {
	var out struct{ Secret string }
	if err := a.call(ctx, "issue device credentials", http.MethodPost, "/api/v1/devices/"+url.PathEscape(device)+"/credentials", nil, &out, http.StatusOK, http.StatusCreated); err != nil {
		return "", err
	}
	if out.Secret == "" {
		return "", errors.New("issue device credentials: the answer has no secret")
	}
	return out.Secret, nil
}

// SetCareSetting moves a patient to a care setting (its alarm rules).
func (a *API) SetCareSetting(ctx context.Context, patient, setting string) error {
	body := map[string]any{"setting": setting, "rules": []any{}}
	return a.call(ctx, "set care setting", http.MethodPut, "/api/v1/patients/"+url.PathEscape(patient)+"/rules?reason=simulated+"+setting+"+patient", body, nil, http.StatusOK)
}

// Register creates every patient of ps (identified by prefix+label) with
// its devices, bindings, care setting and device secrets, conc at a time.
func (a *API) Register(ctx context.Context, ps []Patient, prefix string, conc int) error {
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(max(conc, 1))
	for i := range ps {
		g.Go(func() error { return a.register(ctx, &ps[i], prefix) })
	}
	return g.Wait()
}

func (a *API) register(ctx context.Context, p *Patient, prefix string) error {
	id, err := a.CreatePatient(ctx, IdentifierSystem, prefix+p.Label, "Simulated", p.Label)
	if err != nil {
		return err
	}
	p.ID = id
	if p.Setting != Ward {
		if err := a.SetCareSetting(ctx, id, p.Setting); err != nil {
			return err
		}
	}
	for j := range p.Devices {
		d := &p.Devices[j]
		if d.ID, err = a.CreateDevice(ctx, IdentifierSystem, prefix+p.Label+"-"+string(d.Kind), id, d.Kind); err != nil {
			return err
		}
		if d.Secret, err = a.IssueSecret(ctx, d.ID); err != nil {
			return err
		}
	}
	return nil
}

// Alarms reads the alarm history of every patient (at most 1000 each,
// newest first) with raise times converted by virtual.
func (a *API) Alarms(ctx context.Context, ps []Patient, virtual func(time.Time) time.Time) ([]Alarm, error) {
	var mu sync.Mutex
	var out []Alarm
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for i := range ps {
		g.Go(func() error {
			var b struct {
				Alarms []struct {
					Patient string    `json:"patient"`
					Rule    string    `json:"rule"`
					Raised  time.Time `json:"raised"`
				} `json:"alarms"`
			}
			q := url.Values{"patient": {ps[i].ID}, "limit": {"1000"}}
			if err := a.call(ctx, "list alarms", http.MethodGet, "/api/v1/alarms?"+q.Encode(), nil, &b, http.StatusOK); err != nil {
				return err
			}
			mu.Lock()
			defer mu.Unlock()
			for _, al := range b.Alarms {
				out = append(out, Alarm{Patient: al.Patient, Rule: al.Rule, Raised: virtual(al.Raised)})
			}
			return nil
		})
	}
	err := g.Wait()
	return out, err
}

// EvaluatedReadings returns Tend's count of readings its rule engine has
// evaluated (tend_rules_readings_total on /metrics), to wait for the
// evaluator to catch up before reading the alarm history.
func (a *API) EvaluatedReadings(ctx context.Context) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.Base+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	hc := a.Client
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, fmt.Errorf("read metrics: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return 0, fmt.Errorf("read metrics: %w", err)
	}
	var total float64
	for line := range strings.SplitSeq(string(body), "\n") {
		if rest, ok := strings.CutPrefix(line, "tend_rules_readings_total"); ok {
			var v float64
			if _, err := fmt.Sscan(rest[strings.LastIndexByte(rest, ' ')+1:], &v); err == nil {
				total += v
			}
		}
	}
	return total, nil
}

// WaitEvaluated waits until Tend's rule engine has evaluated at least want
// readings, or its count stopped moving for idle.
func (a *API) WaitEvaluated(ctx context.Context, want float64, idle time.Duration) error {
	last, lastMove := -1.0, time.Now()
	for {
		got, err := a.EvaluatedReadings(ctx)
		if err != nil {
			return err
		}
		if got >= want {
			return nil
		}
		if got != last {
			last, lastMove = got, time.Now()
		} else if time.Since(lastMove) > idle {
			return fmt.Errorf("the rule engine stopped at %.0f of %.0f readings", got, want)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}
