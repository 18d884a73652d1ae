package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// apiClient talks to Tend's HTTP API with the admin token.
type apiClient struct {
	base  string
	token string
	hc    *http.Client
}

func newAPIClient(base, token string, conns int) *apiClient {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = conns
	tr.MaxIdleConnsPerHost = conns
	return &apiClient{base: base, token: token, hc: &http.Client{Transport: tr, Timeout: 30 * time.Second}}
}

func (c *apiClient) close() { c.hc.CloseIdleConnections() }

// statusError is a refused API call; its text is safe to show (it never
// holds the token or a device secret).
type statusError struct {
	What   string
	Status int
	Detail string
}

func (e *statusError) Error() string {
	msg := fmt.Sprintf("%s: %d %s", e.What, e.Status, http.StatusText(e.Status))
	switch e.Status {
	case http.StatusUnauthorized, http.StatusForbidden:
		msg += ": check --token (an admin API token is needed)"
	case http.StatusNotFound, http.StatusMethodNotAllowed:
		msg += ": is the URL a Tend server?"
	}
	if e.Detail != "" {
		msg += ": " + e.Detail
	}
	return msg
}

// call sends one request and decodes a JSON answer into out (may be nil).
func (c *apiClient) call(ctx context.Context, what, method, path, ctype string, body []byte, out any, want ...int) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return fmt.Errorf("%s: build request: %w", what, err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	req.Header.Set("Accept", "application/json, application/fhir+json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("%s: cannot reach %s: %w", what, c.base, unwrapURLError(err))
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return fmt.Errorf("%s: read response: %w", what, err)
	}
	if !slices.Contains(want, resp.StatusCode) {
		return &statusError{What: what, Status: resp.StatusCode, Detail: errorDetail(data)}
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("%s: response is not the expected JSON: %w", what, err)
		}
	}
	return nil
}

func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// errorDetail pulls a short human message out of a problem JSON or FHIR
// OperationOutcome body, falling back to the first line of text.
func errorDetail(body []byte) string {
	var v struct {
		Title  string `json:"title"`
		Detail string `json:"detail"`
		Error  string `json:"error"`
		Issue  []struct {
			Diagnostics string `json:"diagnostics"`
			Details     struct {
				Text string `json:"text"`
			} `json:"details"`
		} `json:"issue"`
	}
	msg := ""
	if json.Unmarshal(body, &v) == nil {
		switch {
		case v.Detail != "":
			msg = v.Detail
		case v.Title != "":
			msg = v.Title
		case v.Error != "":
			msg = v.Error
		case len(v.Issue) > 0 && v.Issue[0].Diagnostics != "":
			msg = v.Issue[0].Diagnostics
		case len(v.Issue) > 0:
			msg = v.Issue[0].Details.Text
		}
	} else {
		msg, _, _ = strings.Cut(string(body), "\n")
	}
	msg = strings.TrimSpace(strings.ToValidUTF8(msg, "?"))
	if len(msg) > 200 {
		cut := 200
		for cut > 0 && !utf8.RuneStart(msg[cut]) {
			cut-- // never split a character
		}
		msg = msg[:cut] + "…"
	}
	return msg
}

// benchDevice is one device set up for the run.
type benchDevice struct {
	patient, device, secret string
}

type idResponse struct {
	ID string `json:"id"`
}

// setupDevice creates patient i, device i bound to it, and a device secret.
func (c *apiClient) setupDevice(ctx context.Context, run string, i int) (benchDevice, error) {
	n := strconv.Itoa(i)
	patient, _ := json.Marshal(map[string]any{
		"resourceType": "Patient",
		"identifier":   []map[string]string{{"system": "urn:tend:bench", "value": "bench-" + run + "-" + n}},
		"name":         []map[string]any{{"family": "Bench", "given": []string{"P" + n}}},
	})
	var p idResponse
	if err := c.call(ctx, "create patient", http.MethodPost, "/fhir/Patient", "application/fhir+json", patient, &p, http.StatusCreated); err != nil {
		return benchDevice{}, err
	}
	if p.ID == "" {
		return benchDevice{}, errors.New("create patient: the response has no id")
	}
	device, _ := json.Marshal(map[string]any{
		"resourceType": "Device",
		"identifier":   []map[string]string{{"system": "urn:tend:bench", "value": "bench-" + run + "-dev-" + n}},
		"patient":      map[string]string{"reference": "Patient/" + p.ID},
	})
	var d idResponse
	if err := c.call(ctx, "create device", http.MethodPost, "/fhir/Device", "application/fhir+json", device, &d, http.StatusCreated); err != nil {
		return benchDevice{}, err
	}
	if d.ID == "" {
		return benchDevice{}, errors.New("create device: the response has no id")
	}
	var cred struct {
		Device, Username, Secret string
	}
	// 200 or 201: the contract does not fix which one a new secret gets.
	if err := c.call(ctx, "create device credentials", http.MethodPost, "/api/v1/devices/"+url.PathEscape(d.ID)+"/credentials", "", nil, &cred, http.StatusOK, http.StatusCreated); err != nil {
		return benchDevice{}, err
	}
	if cred.Secret == "" {
		return benchDevice{}, errors.New("create device credentials: the response has no secret")
	}
	if cred.Username != "" && cred.Username != d.ID {
		return benchDevice{}, fmt.Errorf("create device credentials: username %q is not the device id %q", cred.Username, d.ID)
	}
	return benchDevice{patient: p.ID, device: d.ID, secret: cred.Secret}, nil
}

// countObservations returns how many observations the server has for patient.
func (c *apiClient) countObservations(ctx context.Context, patient string) (int64, error) {
	var b struct {
		Total *int64 `json:"total"`
	}
	q := url.Values{"patient": {patient}, "_summary": {"count"}}
	if err := c.call(ctx, "count observations", http.MethodGet, "/fhir/Observation?"+q.Encode(), "", nil, &b, http.StatusOK); err != nil {
		return 0, err
	}
	if b.Total == nil {
		return 0, errors.New("count observations: the Bundle has no total")
	}
	return *b.Total, nil
}

// metrics fetches the Prometheus text exposition.
func (c *apiClient) metrics(ctx context.Context) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/metrics", nil)
	if err != nil {
		return nil, fmt.Errorf("read metrics: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("read metrics: cannot reach %s: %w", c.base, unwrapURLError(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, &statusError{What: "read metrics", Status: resp.StatusCode}
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("read metrics: %w", err)
	}
	return data, nil
}
