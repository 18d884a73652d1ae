package api

import (
	"context"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
)

var recipientName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

func TestWebhooks(t *testing.T) {
	f := newAlarmFixture(t)
	bad := []struct{ name, body, detail string }{
		{"ftp", `{"url":"ftp://example.org/x"}`, "http:// or https://"},
		{"relative", `{"url":"/hook"}`, "http:// or https://"},
		{"no url", `{"description":"x"}`, "url is required"},
		{"javascript", `{"url":"javascript:alert(1)"}`, "http:// or https://"},
		{"credentials", `{"url":"https://user:pw@example.org/x"}`, "credentials"},
	}
	for _, tc := range bad {
		resp, m := f.do(t, "POST", "/api/v1/webhooks", adminTok, "application/json", tc.body)
		if resp.StatusCode != 422 || !strings.Contains(m["detail"].(string), tc.detail) {
			t.Errorf("%s: %d %v", tc.name, resp.StatusCode, m)
		}
	}
	if resp, _ := f.do(t, "POST", "/api/v1/webhooks", adminTok, "application/json", `{"url":"https://x.org","secret":"mine"}`); resp.StatusCode != 400 {
		t.Errorf("unknown member: %d", resp.StatusCode)
	}

	resp, m := f.do(t, "POST", "/api/v1/webhooks", adminTok, "application/json", `{"url":"https://example.org/tend","description":"nurse station"}`)
	if resp.StatusCode != 201 || resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("create: %d %v %v", resp.StatusCode, m, resp.Header)
	}
	id, secret := m["id"].(string), m["secret"].(string)
	if !recipientName.MatchString(id) || id != strings.ToLower(id) || m["url"] != "https://example.org/tend" || len(secret) < 32 || m["recipient"] != "webhook:"+id {
		t.Fatalf("created webhook: %v", m)
	}
	stored, err := f.db.Webhook(context.Background(), id)
	if err != nil || string(stored.Secret) != secret || !stored.Created.Equal(alarmEpoch) {
		t.Fatalf("stored webhook: %+v %v", stored, err)
	}
	_, m2 := f.do(t, "POST", "/api/v1/webhooks", adminTok, "application/json", `{"url":"http://10.0.0.5:8080/hook"}`)
	if m2["id"] == id || m2["secret"] == secret {
		t.Fatalf("second webhook reuses id or secret: %v", m2)
	}

	req, _ := http.NewRequest("GET", f.srv.URL+"/api/v1/webhooks", nil)
	req.Header.Set("Authorization", "Bearer "+integTok)
	lresp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(lresp.Body)
	lresp.Body.Close()
	if lresp.StatusCode != 200 || strings.Contains(string(raw), secret) || strings.Contains(string(raw), "secret") {
		t.Fatalf("list shows secrets: %d %s", lresp.StatusCode, raw)
	}
	_, list := f.do(t, "GET", "/api/v1/webhooks", integTok, "", "")
	// Both were created at the same (fixed) instant, so their order is the
	// ids' order, which is random: look for the first one by id.
	hooks := list["webhooks"].([]any)
	found := false
	for _, h := range hooks {
		found = found || h.(map[string]any)["id"] == id
	}
	if len(hooks) != 2 || !found {
		t.Fatalf("list: %v", list)
	}

	if resp, _ := f.do(t, "DELETE", "/api/v1/webhooks/"+id, adminTok, "", ""); resp.StatusCode != 204 {
		t.Fatalf("delete: %d", resp.StatusCode)
	}
	if resp, m := f.do(t, "DELETE", "/api/v1/webhooks/"+id, adminTok, "", ""); resp.StatusCode != 404 {
		t.Fatalf("delete again: %d %v", resp.StatusCode, m)
	}
	_, list = f.do(t, "GET", "/api/v1/webhooks", integTok, "", "")
	if hooks := list["webhooks"].([]any); len(hooks) != 1 || hooks[0].(map[string]any)["id"] != m2["id"] {
		t.Fatalf("list after delete: %v", list)
	}
}

func TestWebhookIDs(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		id := webhookID()
		if !recipientName.MatchString(id) || id != strings.ToLower(id) || len(id) != 14 || seen[id] {
			t.Fatalf("webhook id %q (seen before: %v)", id, seen[id])
		}
		seen[id] = true
	}
}
