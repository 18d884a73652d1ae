package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tendhealth/tend/internal/auth"
	"github.com/tendhealth/tend/internal/ingest"
	"github.com/tendhealth/tend/internal/reading"
	"github.com/tendhealth/tend/internal/store"
	"github.com/tendhealth/tend/internal/store/sqlite"
)

// committed records what the pipeline committed (the stream is exercised
// by the node's end-to-end tests).
type committed struct {
	mu  sync.Mutex
	rs  []reading.Reading
	err error
}

func (c *committed) Commit(ctx context.Context, rs []reading.Reading) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return c.err
	}
	c.rs = append(c.rs, rs...)
	return nil
}

type kicker struct{ kicked []string }

func (k *kicker) Disconnect(u string) int { k.kicked = append(k.kicked, u); return 1 }

type fixture struct {
	srv    *httptest.Server
	st     store.Store
	commit *committed
	kick   *kicker
	ready  error
}

const (
	adminTok = "admin-token-aaaaaaaaaaaaaaaaaaaaaaaa"
	integTok = "integration-token-bbbbbbbbbbbbbbbbbb"
)

func newFixture(t *testing.T) *fixture {
	t.Helper()
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "tend.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ctx := context.Background()
	now := time.Now().UTC()
	for tok, role := range map[string]store.Role{adminTok: store.RoleAdmin, integTok: store.RoleIntegration} {
		if err := st.PutToken(ctx, store.Token{Hash: auth.HashSecret(tok), Role: role, Subject: string(role), Created: now}); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.CreatePatient(ctx, &store.Patient{ID: "p1", Resource: []byte(`{"resourceType":"Patient"}`)}); err != nil {
		t.Fatal(err)
	}
	if err := st.CreateDevice(ctx, &store.Device{ID: "d1", Patient: "p1", Resource: []byte(`{"resourceType":"Device"}`)}, now.Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	f := &fixture{st: st, commit: &committed{}, kick: &kicker{}}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	p := ingest.NewPipeline(st, f.commit, time.Now, log, nil)
	h := New(Config{Store: st, Ingest: p, Ready: func() error { return f.ready }, Kickers: []Kicker{f.kick}, Now: time.Now, Logger: log})
	f.srv = httptest.NewServer(h)
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fixture) do(t *testing.T, method, path, token, ctype, body string) (*http.Response, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, f.srv.URL+path, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	b, _ := io.ReadAll(resp.Body)
	json.Unmarshal(b, &m)
	return resp, m
}

func TestPermissions(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		method, path, token string
		want                int
	}{
		{"GET", "/api/v1/deadletters", "", 401},
		{"GET", "/api/v1/deadletters", "nonsense", 401},
		{"GET", "/api/v1/deadletters", integTok, 403},
		{"GET", "/api/v1/deadletters", adminTok, 200},
		{"POST", "/api/v1/devices/d1/credentials", integTok, 403},
		{"POST", "/api/v1/devices/nope/credentials", adminTok, 404},
		{"GET", "/api/v1/patients/p1/latest", integTok, 200},
		{"GET", "/api/v1/patients/p1/latest", "", 401},
		{"GET", "/api/v1/patients/nope/latest", adminTok, 404},
		{"POST", "/api/v1/tokens", integTok, 403},
		{"GET", "/no/such/thing", adminTok, 404},
		{"GET", "/healthz", "", 200},
	}
	for _, tc := range tests {
		resp, _ := f.do(t, tc.method, tc.path, tc.token, "", "")
		if resp.StatusCode != tc.want {
			t.Errorf("%s %s token=%q: %d, want %d", tc.method, tc.path, tc.token, resp.StatusCode, tc.want)
		}
		if resp.StatusCode == 401 && resp.Header.Get("WWW-Authenticate") == "" {
			t.Errorf("%s %s: 401 without WWW-Authenticate", tc.method, tc.path)
		}
	}
}

func TestReadyz(t *testing.T) {
	f := newFixture(t)
	if resp, _ := f.do(t, "GET", "/readyz", "", "", ""); resp.StatusCode != 200 {
		t.Fatalf("ready: %d", resp.StatusCode)
	}
	f.ready = errors.New("stream: not connected")
	resp, m := f.do(t, "GET", "/readyz", "", "", "")
	if resp.StatusCode != 503 || !strings.Contains(m["detail"].(string), "stream") {
		t.Fatalf("not ready: %d %v", resp.StatusCode, m)
	}
}

func TestCredentialsRotateAndKick(t *testing.T) {
	f := newFixture(t)
	_, first := f.do(t, "POST", "/api/v1/devices/d1/credentials", adminTok, "", "")
	resp, second := f.do(t, "POST", "/api/v1/devices/d1/credentials", adminTok, "", "")
	if resp.StatusCode != 200 || resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("credentials: %d %v", resp.StatusCode, resp.Header)
	}
	if first["secret"] == second["secret"] || second["username"] != "d1" || second["device"] != "d1" {
		t.Fatalf("rotation: %v then %v", first, second)
	}
	if len(f.kick.kicked) != 2 || f.kick.kicked[0] != "d1" {
		t.Fatalf("open connections not closed: %v", f.kick.kicked)
	}
	body := `[{"n":"hr","v":60}]`
	if r, _ := f.do(t, "POST", "/api/v1/devices/d1/obs", first["secret"].(string), "application/senml+json", body); r.StatusCode != 401 {
		t.Errorf("old secret: %d", r.StatusCode)
	}
	if r, m := f.do(t, "POST", "/api/v1/devices/d1/obs", second["secret"].(string), "application/senml+json", body); r.StatusCode != 202 || m["accepted"].(float64) != 1 {
		t.Errorf("new secret: %d %v", r.StatusCode, m)
	}
	if len(f.commit.rs) != 1 || f.commit.rs[0].Patient != "p1" || f.commit.rs[0].Code != "8867-4" {
		t.Errorf("committed %+v", f.commit.rs)
	}
}

func TestCommitFailureIsNotAcknowledged(t *testing.T) {
	f := newFixture(t)
	_, cr := f.do(t, "POST", "/api/v1/devices/d1/credentials", adminTok, "", "")
	f.commit.err = errors.New("stream unavailable: disk full at /secret/path")
	resp, m := f.do(t, "POST", "/api/v1/devices/d1/obs", cr["secret"].(string), "application/senml+json", `[{"n":"hr","v":60}]`)
	if resp.StatusCode != 503 || strings.Contains(m["detail"].(string), "/secret/path") {
		t.Fatalf("commit failure: %d %v", resp.StatusCode, m)
	}
	ds, _ := f.st.DeadLetters(context.Background(), 10, 0)
	if len(ds) != 0 {
		t.Fatalf("a payload Tend could not take for internal reasons was dead-lettered: %+v", ds)
	}
}

func TestLoginAndTokens(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	if err := f.st.CreateUser(ctx, store.User{ID: "admin", Name: "A", Role: store.RoleAdmin, PasswordHash: auth.HashPassword("pw-123456"), Created: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if r, _ := f.do(t, "POST", "/api/v1/auth/token", "", "application/json", `{"username":"admin","password":"wrong"}`); r.StatusCode != 401 {
		t.Fatalf("wrong password: %d", r.StatusCode)
	}
	if r, _ := f.do(t, "POST", "/api/v1/auth/token", "", "application/json", `{"username":"nobody","password":"x"}`); r.StatusCode != 401 {
		t.Fatalf("unknown user: %d", r.StatusCode)
	}
	r, m := f.do(t, "POST", "/api/v1/auth/token", "", "application/json", `{"username":"admin","password":"pw-123456"}`)
	if r.StatusCode != 201 {
		t.Fatalf("login: %d %v", r.StatusCode, m)
	}
	tok := m["token"].(string)
	if r, _ := f.do(t, "GET", "/api/v1/deadletters", tok, "", ""); r.StatusCode != 200 {
		t.Fatalf("token from login: %d", r.StatusCode)
	}
	r, m = f.do(t, "POST", "/api/v1/tokens", tok, "application/json", `{"role":"integration"}`)
	if r.StatusCode != 201 || m["role"] != "integration" {
		t.Fatalf("issue token: %d %v", r.StatusCode, m)
	}
	if r, _ := f.do(t, "GET", "/api/v1/deadletters", m["token"].(string), "", ""); r.StatusCode != 403 {
		t.Fatalf("integration token on admin endpoint: %d", r.StatusCode)
	}
	if r, _ := f.do(t, "POST", "/api/v1/tokens", tok, "application/json", `{"role":"root"}`); r.StatusCode != 400 {
		t.Fatalf("unknown role: %d", r.StatusCode)
	}
}

func TestDeadLetterListingAndBinaryPayload(t *testing.T) {
	f := newFixture(t)
	_, cr := f.do(t, "POST", "/api/v1/devices/d1/credentials", adminTok, "", "")
	f.do(t, "POST", "/api/v1/devices/d1/obs", cr["secret"].(string), "application/senml+cbor", "\xff\x00\x01")
	f.do(t, "POST", "/api/v1/devices/d1/obs", cr["secret"].(string), "application/senml+json", `[{"n":"<script>","v":1}]`)
	_, m := f.do(t, "GET", "/api/v1/deadletters?limit=1", adminTok, "", "")
	list := m["deadletters"].([]any)
	if len(list) != 1 || m["next"] == nil {
		t.Fatalf("page of 1: %v", m)
	}
	newest := list[0].(map[string]any)
	if newest["payload_encoding"] != "utf-8" || newest["source"] != "http" || newest["device"] != "d1" {
		t.Fatalf("newest: %v", newest)
	}
	_, m = f.do(t, "GET", m["next"].(string), adminTok, "", "")
	older := m["deadletters"].([]any)[0].(map[string]any)
	if older["payload_encoding"] != "base64" || older["payload"] != "/wAB" {
		t.Fatalf("binary payload: %v", older)
	}
	if r, _ := f.do(t, "GET", "/api/v1/deadletters?limit=0", adminTok, "", ""); r.StatusCode != 400 {
		t.Fatalf("limit=0: %d", r.StatusCode)
	}
}

func TestUnauthenticatedPayloadIsNeverReplayed(t *testing.T) {
	f := newFixture(t)
	resp, m := f.do(t, "POST", "/api/v1/devices/d1/obs", "forged", "application/senml+json", `[{"n":"hr","v":200}]`)
	if resp.StatusCode != 401 {
		t.Fatalf("forged secret: %d", resp.StatusCode)
	}
	id := int(m["deadletter"].(float64))
	resp, m = f.do(t, "POST", fmt.Sprintf("/api/v1/deadletters/%d/replay", id), adminTok, "", "")
	if resp.StatusCode != 409 || len(f.commit.rs) != 0 {
		t.Fatalf("replay of an unauthenticated payload: %d %v, committed %d", resp.StatusCode, m, len(f.commit.rs))
	}
}
