package web_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/tendhealth/tend/internal/auth"
	"github.com/tendhealth/tend/internal/store"
)

// hostile is appended to a tag naming each field: script, an attribute
// breakout, a javascript: URL, a title breakout and the Unicode line and
// paragraph separators (which end a JavaScript string literal in older
// engines).
const hostile = `<script>alert(1)</script>"><img src=x onerror=alert(1)>javascript:alert(1)</title><svg onload=alert(1)>` + "\u2028\u2029'"

// rawPayloads must never reach a page unescaped.
var rawPayloads = []string{`<script>alert(1)</script>`, `<img src=x onerror=alert(1)>`, `<svg onload=alert(1)>`}

var (
	jsURL       = regexp.MustCompile(`(?i)(href|src|action|formaction|hx-get|hx-post)\s*=\s*["']?\s*javascript:`)
	csrfField   = regexp.MustCompile(`name="csrf" value="([^"]+)"`)
	scriptTag   = regexp.MustCompile(`(?i)<script\b[^>]*>`)
	titleCloser = regexp.MustCompile(`(?i)</title>`)
)

// xssFields names every field that reaches a page, seeded with hostile.
type xssFields struct {
	patient, device, alarm string
	tags                   map[string]string // tag -> what it names
}

// seedHostile puts hostile strings into every field the dashboard shows.
func seedHostile(t *testing.T, tend *tendNode) xssFields {
	t.Helper()
	ctx := context.Background()
	st := tend.n.Store()
	f := xssFields{tags: map[string]string{}}
	tag := func(name, what string) string { f.tags[name] = what; return name + hostile }

	res, _ := json.Marshal(map[string]any{"resourceType": "Patient",
		"name":       []map[string]any{{"text": tag("XPNAME", "patient name")}},
		"identifier": []map[string]string{{"system": "urn:mrn", "value": tag("XPMRN", "patient identifier")}}})
	f.patient = tend.call("POST", "/fhir/Patient", testToken, "application/fhir+json", string(res), 201)["id"].(string)
	// A second patient named only by family and given names.
	res, _ = json.Marshal(map[string]any{"resourceType": "Patient",
		"name": []map[string]any{{"family": tag("XPFAMILY", "patient family name"), "given": []string{tag("XPGIVEN", "patient given name")}, "prefix": []string{tag("XPPREFIX", "patient name prefix")}}}})
	tend.call("POST", "/fhir/Patient", testToken, "application/fhir+json", string(res), 201)
	res, _ = json.Marshal(map[string]any{"resourceType": "Device", "patient": map[string]string{"reference": "Patient/" + f.patient},
		"deviceName": []map[string]string{{"name": tag("XDNAME", "device name"), "type": "user-friendly-name"}},
		"identifier": []map[string]string{{"system": "urn:serial", "value": tag("XDSERIAL", "device identifier")}},
		"version":    []map[string]any{{"type": map[string]string{"text": "firmware"}, "value": tag("XDFIRMWARE", "device firmware")}}})
	f.device = tend.call("POST", "/fhir/Device", testToken, "application/fhir+json", string(res), 201)["id"].(string)
	secret := tend.call("POST", "/api/v1/devices/"+f.device+"/credentials", testToken, "", "", 200)["secret"].(string)

	// An alarm whose rule name is hostile.
	rulesDoc, _ := json.Marshal(map[string]any{"rules": []map[string]any{{"id": "xss-hr", "name": tag("XRULE", "alarm rule name"),
		"kind": "threshold", "code": "hr", "op": ">", "value": 100, "priority": "high"}}})
	tend.call("PUT", "/api/v1/patients/"+f.patient+"/rules?reason="+url.QueryEscape(tag("XRULEREASON", "rule change reason")), testToken, "application/json", string(rulesDoc), 200)
	tend.send(f.device, secret, fmt.Sprintf(`[{"bt":%.3f,"n":"hr","u":"/min","v":150},{"n":"spo2","u":"%%","v":95}]`, float64(time.Now().UnixMilli())/1000))
	deadline := time.Now().Add(20 * time.Second)
	for f.alarm == "" {
		got := tend.call("GET", "/api/v1/alarms?patient="+f.patient, testToken, "", "", 200)
		if as, _ := got["alarms"].([]any); len(as) > 0 {
			f.alarm = as[0].(map[string]any)["id"].(string)
		} else if time.Now().After(deadline) {
			t.Fatal("the hostile rule raised no alarm")
		} else {
			time.Sleep(50 * time.Millisecond)
		}
	}
	// A unit is checked on ingest; a refused one is quoted in the dead
	// letter's reason.
	req, _ := http.NewRequest("POST", tend.base+"/api/v1/devices/"+f.device+"/obs", strings.NewReader(`[{"n":"hr","u":"XUNIT`+strings.ReplaceAll(hostile, `"`, `\"`)+`","v":72}]`))
	req.Header.Set("Authorization", "Bearer "+secret)
	req.Header.Set("Content-Type", "application/senml+json")
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
	}
	f.tags["XUNIT"] = "unit (dead-letter reason)"
	if err := st.AddDeadLetter(ctx, &store.DeadLetter{Received: time.Now().UTC(), Source: "http", Device: f.device, ContentType: "text/plain",
		Payload: []byte(tag("XDLPAYLOAD", "dead-letter payload")), Reason: tag("XDLREASON", "dead-letter reason")}); err != nil {
		t.Fatal(err)
	}
	// People, organisation, care team, consent and break-glass.
	if err := st.CreateOrg(ctx, store.Organisation{ID: "xss-org", Name: tag("XORG", "organisation name"), Created: time.Now()}); err != nil {
		t.Fatal(err)
	}
	for _, u := range []struct {
		id   string
		role store.Role
	}{{"xss-clin", store.RoleClinician}, {"xss-carer", store.RoleCaregiver}} {
		if err := st.CreateUser(ctx, store.User{ID: u.id, Name: tag("XUSER"+strings.ToUpper(string(u.role)), "user display name"), Role: u.role,
			PasswordHash: auth.HashPassword("xss-password-123"), Created: time.Now().UTC()}); err != nil {
			t.Fatal(err)
		}
	}
	tend.call("POST", "/api/v1/care-teams", testToken, "application/json", `{"id":"xss-team","name":"`+jsonEscape(tag("XTEAM", "care team name"))+`"}`, 201)
	tend.call("PUT", "/api/v1/care-teams/xss-team/members/xss-clin", testToken, "", "", 200)
	tend.call("POST", "/api/v1/consents", testToken, "application/json", `{"patient":"`+f.patient+`","grantee":"xss-carer","scope":"read"}`, 201)
	const clinToken = "xss-clinician-token-0123456789abcdef"
	if err := st.PutToken(ctx, store.Token{Hash: auth.HashSecret(clinToken), Role: store.RoleClinician, Subject: "xss-clin", Created: time.Now()}); err != nil {
		t.Fatal(err)
	}
	tend.call("POST", "/api/v1/break-glass", clinToken, "application/json", `{"patient":"`+f.patient+`","reason":"`+jsonEscape(tag("XBREAKGLASS", "break-glass reason"))+`"}`, 201)
	return f
}

func jsonEscape(s string) string {
	b, _ := json.Marshal(s)
	return string(b[1 : len(b)-1])
}

// signInAdmin signs the nurse (an admin) in over HTTP and returns the
// client holding the session.
func signInAdmin(t *testing.T, base string) *http.Client {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Get(base + "/signin")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := csrfField.FindStringSubmatch(string(b))
	if m == nil {
		t.Fatalf("no CSRF field on the sign-in page")
	}
	resp, err = c.PostForm(base+"/signin", url.Values{"username": {nurseName}, "password": {nursePass}, "next": {"/"}, "csrf": {m[1]}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign in: %d", resp.StatusCode)
	}
	return c
}

// pagePath fills a dashboard route's wildcards with the hostile records.
func (f xssFields) pagePath(pattern string) (string, bool) {
	method, p, ok := strings.Cut(pattern, " ")
	if !ok || method != http.MethodGet || strings.HasSuffix(p, "/") && p != "/" {
		return "", false // not a page: a subtree (assets) or the catch-all
	}
	segs := strings.Split(p, "/")
	for i, s := range segs {
		if !strings.HasPrefix(s, "{") {
			continue
		}
		switch prev := segs[i-1]; {
		case s == "{$}":
			segs[i] = ""
		case prev == "patients":
			segs[i] = f.patient
		case prev == "devices":
			segs[i] = f.device
		case prev == "alarms":
			segs[i] = f.alarm
		case prev == "users":
			segs[i] = "xss-clin"
		case prev == "care-teams" || prev == "teams":
			segs[i] = "xss-team"
		case prev == "orgs":
			segs[i] = "xss-org"
		default:
			segs[i] = "x"
		}
	}
	return strings.Join(segs, "/"), true
}

// checkInert fails if a response lets hostile markup through.
func checkInert(t *testing.T, what, body string) {
	t.Helper()
	for _, p := range rawPayloads {
		if strings.Contains(body, p) {
			t.Errorf("%s: %q appears unescaped", what, p)
		}
	}
	if m := jsURL.FindString(body); m != "" {
		t.Errorf("%s: a javascript: URL in an attribute: %q", what, m)
	}
	for _, tag := range scriptTag.FindAllString(body, -1) {
		if !strings.Contains(tag, "src=") {
			t.Errorf("%s: an inline script element %q", what, tag)
		}
	}
	if n := len(titleCloser.FindAllString(body, -1)); n > 1 {
		t.Errorf("%s: %d </title> tags: the title was broken out of", what, n)
	}
}

// checkCSP fails unless the page's policy forbids inline script.
func checkCSP(t *testing.T, what string, h http.Header) {
	t.Helper()
	csp := h.Get("Content-Security-Policy")
	var script string
	for d := range strings.SplitSeq(csp, ";") {
		d = strings.TrimSpace(d)
		if strings.HasPrefix(d, "script-src ") || script == "" && strings.HasPrefix(d, "default-src ") {
			script = d
		}
	}
	if script == "" || strings.Contains(script, "'unsafe-inline'") || strings.Contains(script, "'unsafe-eval'") || strings.Contains(script, "*") ||
		!strings.Contains(csp, "object-src 'none'") || !strings.Contains(csp, "base-uri") {
		t.Errorf("%s: Content-Security-Policy %q does not forbid inline script", what, csp)
	}
}

// TestHostileStringsRenderInert seeds script payloads into every field
// that reaches the dashboard (patient names and identifiers, device names,
// alarm rule names, user, organisation and care team names, consent and
// break-glass data, dead letters, units), opens every page and event
// stream as an admin, and checks each answer carries them only escaped,
// under a policy that forbids inline script. Then headless Chromium opens
// every page: no dialog may open and no element may carry an event
// handler attribute, a javascript: URL or inline script.
func TestHostileStringsRenderInert(t *testing.T) {
	tend := startTend(t)
	tend.addUser(t, nurseName, nursePass, store.RoleAdmin)
	f := seedHostile(t, tend)
	c := signInAdmin(t, tend.base)

	var pages []string
	seen := map[string]bool{}
	// Besides the routes: hostile input in the URL itself reaches error
	// pages and the sign-in page's return address.
	extra := []string{"GET /no-such-page/" + url.PathEscape(hostile), "GET /patients/" + url.PathEscape(hostile),
		"GET /signin?next=" + url.QueryEscape("javascript:alert(1)"), "GET /signin?next=" + url.QueryEscape(hostile)}
	for _, pattern := range append(tend.n.Routes(), extra...) {
		p, ok := f.pagePath(pattern)
		if !ok || strings.HasPrefix(p, "/api/") || strings.HasPrefix(p, "/fhir") || strings.HasPrefix(p, "/.well-known") ||
			slices.Contains([]string{"/healthz", "/readyz", "/metrics", "/favicon.ico"}, p) {
			continue
		}
		stream := strings.HasPrefix(p, "/events/")
		for _, q := range []string{"", "?patient=" + f.patient} {
			if stream && q != "" {
				continue
			}
			path := p + q
			wait := 10 * time.Second
			if stream {
				wait = time.Second // what a stream sends at once: the current state, rendered
			}
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			req, _ := http.NewRequestWithContext(ctx, "GET", tend.base+path, nil)
			resp, err := c.Do(req)
			if err != nil {
				cancel()
				t.Fatalf("GET %s: %v", path, err)
			}
			// Event streams send rendered fragments; read what comes
			// within the deadline.
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			cancel()
			body := string(b)
			what := fmt.Sprintf("GET %s (%d)", path, resp.StatusCode)
			if resp.StatusCode >= 500 {
				t.Errorf("%s: %.200s", what, body)
			}
			checkInert(t, what, body)
			if ct := resp.Header.Get("Content-Type"); strings.HasPrefix(ct, "text/html") || strings.HasPrefix(ct, "text/event-stream") {
				checkCSP(t, what, resp.Header)
				if strings.HasPrefix(ct, "text/html") && resp.StatusCode == 200 && q == "" {
					pages = append(pages, path)
				}
			}
			for tag := range f.tags {
				if strings.Contains(body, tag) {
					seen[tag] = true
				}
			}
		}
	}
	// The seed must have reached the pages, or the checks above prove
	// nothing.
	for _, must := range []string{"XPNAME", "XDNAME", "XRULE", "XUSERCLINICIAN", "XRULEREASON", "XDFIRMWARE"} {
		if !seen[must] {
			t.Errorf("the %s (%s) appeared on no page: the walk does not reach it", f.tags[must], must)
		}
	}
	var shown, unseen []string
	for tag, what := range f.tags {
		if seen[tag] {
			shown = append(shown, what)
		} else {
			unseen = append(unseen, what)
		}
	}
	slices.Sort(shown)
	slices.Sort(unseen)
	t.Logf("shown escaped on the dashboard: %s; on no page: %s", strings.Join(shown, ", "), strings.Join(unseen, ", "))
	if len(pages) < 5 {
		t.Fatalf("only %d HTML pages reached: %v", len(pages), pages)
	}

	t.Run("Chromium", func(t *testing.T) {
		ctx, _ := newBrowser(t)
		var mu sync.Mutex
		var dialogs []string
		if err := chromedp.Listen(ctx, func(ev any) {
			if d, ok := ev.(*page.EventJavascriptDialogOpening); ok {
				mu.Lock()
				dialogs = append(dialogs, d.Message)
				mu.Unlock()
				// Closing it from here would deadlock: see chromedp.Listen.
				go chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: true})
			}
		}); err != nil {
			t.Fatal(err)
		}
		// The listener sees a dialog where the policy allows script.
		must(t, ctx, "probe the dialog listener", chromedp.Navigate(`data:text/html,<script>alert("probe")</script>`))
		must(t, ctx, "settle", chromedp.Sleep(100*time.Millisecond))
		mu.Lock()
		probed := slices.Equal(dialogs, []string{"probe"})
		dialogs = nil
		mu.Unlock()
		if !probed {
			t.Fatal("the dialog listener did not see the probe's alert")
		}
		must(t, ctx, "sign in", chromedp.Navigate(tend.base+"/signin"),
			chromedp.SendKeys(chromedp.CSS(`#username`), nurseName),
			chromedp.SendKeys(chromedp.CSS(`#password`), nursePass),
			chromedp.Submit(chromedp.CSS(`#password`)),
			chromedp.WaitVisible(chromedp.CSS(`.tiles`)))
		const inspect = `(() => {
			const bad = [];
			for (const el of document.querySelectorAll("*")) {
				for (const a of el.attributes) {
					if (a.name.startsWith("on")) bad.push(el.tagName + " " + a.name);
					if (/^\s*javascript:/i.test(a.value)) bad.push(el.tagName + " " + a.name + "=javascript:");
				}
				if (el.tagName === "SCRIPT" && !el.src) bad.push("inline SCRIPT");
			}
			if (window.__pwned !== undefined) bad.push("window.__pwned");
			return bad;
		})()`
		for _, p := range pages {
			must(t, ctx, "open "+p, chromedp.Navigate(tend.base+p), chromedp.WaitReady(chromedp.CSS(`body`)))
			bad, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](inspect))
			if err != nil {
				t.Errorf("%s: %v", p, err)
			}
			if len(bad) > 0 {
				t.Errorf("%s: hostile markup became live: %v", p, bad)
			}
		}
		// Give a late handler (an image error, a live update) its moment.
		must(t, ctx, "settle", chromedp.Sleep(300*time.Millisecond))
		mu.Lock()
		defer mu.Unlock()
		if len(dialogs) > 0 {
			t.Errorf("%d JavaScript dialogs opened: %q", len(dialogs), dialogs)
		}
	})
}
