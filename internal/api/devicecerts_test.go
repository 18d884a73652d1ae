package api

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tendhealth/tend/internal/auth"
	"github.com/tendhealth/tend/internal/deviceca"
	"github.com/tendhealth/tend/internal/ingest"
	"github.com/tendhealth/tend/internal/store"
)

func TestDeviceCertificateEndpoints(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	key, err := deviceca.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	p := ingest.NewPipeline(f.st, f.commit, time.Now, log, nil)
	p.Certs = deviceca.NewVerifier(f.st, time.Now)
	h := New(Config{Store: f.st, Ingest: p, Ready: func() error { return nil }, Kickers: []Kicker{f.kick}, Now: time.Now, Logger: log,
		DeviceCA: &deviceca.Authority{Store: f.st, Key: &key}})
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = &tls.Config{ClientAuth: tls.RequestClientCert}
	srv.StartTLS()
	t.Cleanup(srv.Close)

	const northTok = "north-admin-token-cccccccccccccccccc"
	if err := f.st.CreateOrg(ctx, store.Organisation{ID: "north", Created: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if err := f.st.PutToken(ctx, store.Token{Hash: auth.HashSecret(northTok), Role: store.RoleAdmin, Subject: "n", Org: "north", Created: time.Now()}); err != nil {
		t.Fatal(err)
	}
	do := func(method, path, token, body string) (*http.Response, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		b, _ := io.ReadAll(resp.Body)
		json.Unmarshal(b, &m)
		return resp, m
	}

	// No CA yet: issuing says how to make one.
	if resp, m := do("POST", "/api/v1/devices/d1/certificates", adminTok, ""); resp.StatusCode != 409 || !strings.Contains(m["detail"].(string), "tend ca init") {
		t.Fatalf("issue without CA: %d %v", resp.StatusCode, m)
	}
	if _, err := (&deviceca.Authority{Store: f.st, Key: &key}).Init(ctx, ""); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, path, token, body string
		want                    int
	}{
		{"integration token", "/api/v1/devices/d1/certificates", integTok, "", 403},
		{"another organisation", "/api/v1/devices/d1/certificates", northTok, "", 404},
		{"unknown device", "/api/v1/devices/nope/certificates", adminTok, "", 404},
		{"bad days", "/api/v1/devices/d1/certificates", adminTok, `{"days":-1}`, 400},
		{"bad JSON", "/api/v1/devices/d1/certificates", adminTok, `{`, 400},
		{"revoke: integration token", "/api/v1/devices/d1/certificates/revoke", integTok, "", 403},
		{"revoke: another organisation", "/api/v1/devices/d1/certificates/revoke", northTok, "", 404},
		{"revoke: unknown serial", "/api/v1/devices/d1/certificates/revoke", adminTok, `{"serial":"abc"}`, 404},
		{"revoke: bad serial", "/api/v1/devices/d1/certificates/revoke", adminTok, `{"serial":"xyz"}`, 400},
	}
	for _, tc := range tests {
		if resp, m := do("POST", tc.path, tc.token, tc.body); resp.StatusCode != tc.want {
			t.Errorf("%s: %d %v, want %d", tc.name, resp.StatusCode, m, tc.want)
		}
	}

	resp, m := do("POST", "/api/v1/devices/d1/certificates", adminTok, `{"days":2}`)
	if resp.StatusCode != 201 || resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("issue: %d %v", resp.StatusCode, m)
	}
	serial := m["serial"].(string)
	kp, err := tls.X509KeyPair([]byte(m["certificate"].(string)), []byte(m["private_key"].(string)))
	if err != nil {
		t.Fatalf("issued pair: %v", err)
	}

	// The certificate authenticates HTTP ingest for its device, without a secret.
	ingestWith := func(device string) int {
		t.Helper()
		tr := srv.Client().Transport.(*http.Transport).Clone()
		tr.TLSClientConfig.Certificates = []tls.Certificate{kp}
		req, _ := http.NewRequest("POST", srv.URL+"/api/v1/devices/"+device+"/obs",
			strings.NewReader(`[{"n":"hr","u":"/min","v":70}]`))
		req.Header.Set("Content-Type", "application/senml+json")
		resp, err := (&http.Client{Transport: tr}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := ingestWith("d1"); code != 202 {
		t.Fatalf("ingest with the device certificate: %d", code)
	}

	resp, m = do("POST", "/api/v1/devices/d1/certificates/revoke", adminTok, `{"serial":"`+strings.ToUpper(serial)+`"}`)
	if resp.StatusCode != 200 || len(m["revoked"].([]any)) != 1 || m["closed_connections"].(float64) != 1 {
		t.Fatalf("revoke: %d %v", resp.StatusCode, m)
	}
	if len(f.kick.kicked) != 1 || f.kick.kicked[0] != "d1" {
		t.Fatalf("kicked %v", f.kick.kicked)
	}
	// Keep-alive connections are checked per request, not per handshake.
	if code := ingestWith("d1"); code != 401 {
		t.Fatalf("ingest with a revoked certificate: %d, want 401", code)
	}
	resp, m = do("POST", "/api/v1/devices/d1/certificates/revoke", adminTok, "")
	if resp.StatusCode != 200 || len(m["revoked"].([]any)) != 0 {
		t.Fatalf("revoke all again: %d %v", resp.StatusCode, m)
	}
}
