package web

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tendhealth/tend/internal/alarm"
	"github.com/tendhealth/tend/internal/alarmdb"
	"github.com/tendhealth/tend/internal/auth"
	"github.com/tendhealth/tend/internal/codes"
	"github.com/tendhealth/tend/internal/live"
	"github.com/tendhealth/tend/internal/reading"
	"github.com/tendhealth/tend/internal/rules"
	"github.com/tendhealth/tend/internal/store"
	"github.com/tendhealth/tend/internal/store/sqlite"
)

var epoch = time.Date(2026, 11, 23, 8, 0, 0, 0, time.UTC)

const (
	adminPass = "admin-password-1"
	integPass = "integration-password-1"
)

// fixture is the dashboard over a real SQLite store, a real alarm store
// and service, and a live hub, with a clock the test sets.
type fixture struct {
	srv  *httptest.Server
	h    *Handler
	st   store.Store
	db   *alarmdb.DB
	svc  *alarm.Service
	hub  *live.Hub
	kick *kicker

	mu  sync.Mutex
	now time.Time
}

type kicker struct {
	mu     sync.Mutex
	kicked []string
}

func (k *kicker) Disconnect(u string) int {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.kicked = append(k.kicked, u)
	return 1
}

func (f *fixture) clock() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fixture) set(t time.Time) {
	f.mu.Lock()
	f.now = t
	f.mu.Unlock()
}

var (
	hashOnce             sync.Once
	adminHash, integHash string
)

func newFixture(t testing.TB) *fixture {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	st, err := sqlite.Open(filepath.Join(dir, "tend.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	db, err := alarmdb.Open(filepath.Join(dir, "alarms.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	f := &fixture{st: st, db: db, hub: &live.Hub{}, kick: &kicker{}, now: epoch}
	profiles := &alarm.Profiles{Store: db, Now: f.clock}
	f.svc = alarm.NewService(alarm.Config{Store: db, Escalation: profiles.Escalation, Now: f.clock,
		OnChange: func(a alarm.Alarm, action string) {
			b, _ := json.Marshal(map[string]any{"action": action, "alarm": a})
			f.hub.Publish(live.Event{Type: live.TypeAlarm, Patient: a.Patient, Data: b})
		}})
	hashOnce.Do(func() { adminHash, integHash = auth.HashPassword(adminPass), auth.HashPassword(integPass) })
	for _, u := range []store.User{
		{ID: "ann", Name: "Ann Admin", Role: store.RoleAdmin, PasswordHash: adminHash, Created: epoch},
		{ID: "ivan", Name: "Ivan Integration", Role: store.RoleIntegration, PasswordHash: integHash, Created: epoch},
	} {
		if err := st.CreateUser(ctx, u); err != nil {
			t.Fatal(err)
		}
	}
	key, err := LoadOrCreateKey(filepath.Join(dir, "web-session.key"))
	if err != nil {
		t.Fatal(err)
	}
	f.h, err = New(Config{Store: st, Alarms: f.svc, AlarmStore: db, Profiles: profiles, Live: f.hub, SessionKey: key,
		Kickers: []Kicker{f.kick}, Now: f.clock, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	f.srv = httptest.NewServer(f.h)
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fixture) patient(t testing.TB, id, name string) {
	t.Helper()
	res, _ := json.Marshal(map[string]any{"resourceType": "Patient", "name": []map[string]string{{"text": name}}})
	if err := f.st.CreatePatient(context.Background(), &store.Patient{ID: id, Resource: res,
		Identifiers: []store.Identifier{{System: "urn:mrn", Value: "MRN-" + id}}}); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) readings(t testing.TB, rs ...reading.Reading) {
	t.Helper()
	for i := range rs {
		if rs[i].Received.IsZero() {
			rs[i].Received = rs[i].Time
		}
		if rs[i].Unit == "" {
			if c, ok := codes.ByLOINC(rs[i].Code); ok {
				rs[i].Unit = c.Unit
			}
		}
	}
	if _, err := f.st.Append(context.Background(), rs); err != nil {
		t.Fatal(err)
	}
}

func vitalReading(patient, code string, v float64, at time.Time) reading.Reading {
	return reading.Reading{Patient: patient, Device: "dev-" + patient, Code: code, Value: v, HasValue: true, Time: at, Source: "test"}
}

func (f *fixture) raise(t testing.TB, patient, rule string, prio rules.Priority) alarm.Alarm {
	t.Helper()
	ctx := context.Background()
	ev := rules.Event{Type: rules.Start, Patient: patient, Rule: rule, Name: rule, Kind: rules.KindThreshold,
		Category: rules.CategoryClinical, Priority: prio, Code: codes.OxygenSaturation, Value: 85, Unit: "%", Time: f.clock(), Message: rule + " message"}
	if err := f.svc.Apply(ctx, alarm.Checkpoint{}, []rules.Event{ev}); err != nil {
		t.Fatal(err)
	}
	as, err := f.db.Alarms(ctx, alarm.Filter{Patient: patient})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range as {
		if a.Rule == rule && a.Open() {
			return a
		}
	}
	t.Fatalf("no open %s alarm for %s", rule, patient)
	return alarm.Alarm{}
}

// browser is an HTTP client with a cookie jar that does not follow
// redirects, so tests see them.
type browser struct {
	t    *testing.T
	f    *fixture
	c    *http.Client
	csrf string
}

func (f *fixture) browser(t *testing.T) *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: t, f: f, c: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

var csrfInput = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func (b *browser) get(path string) (*http.Response, string) {
	b.t.Helper()
	resp, err := b.c.Get(b.f.srv.URL + path)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if m := csrfInput.FindStringSubmatch(string(body)); m != nil {
		b.csrf = m[1]
	}
	return resp, string(body)
}

// post sends a form with the CSRF token of the last page seen (unless
// the form sets its own).
func (b *browser) post(path string, form url.Values) (*http.Response, string) {
	b.t.Helper()
	if form == nil {
		form = url.Values{}
	}
	if _, ok := form["csrf"]; !ok {
		form.Set("csrf", b.csrf)
	}
	resp, err := b.c.PostForm(b.f.srv.URL+path, form)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if m := csrfInput.FindStringSubmatch(string(body)); m != nil {
		b.csrf = m[1]
	}
	return resp, string(body)
}

func (f *fixture) signedIn(t *testing.T, user, password string) *browser {
	t.Helper()
	b := f.browser(t)
	b.get("/signin")
	resp, _ := b.post("/signin", url.Values{"username": {user}, "password": {password}, "next": {"/"}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign in as %s: %d", user, resp.StatusCode)
	}
	b.get("/") // picks up the session's CSRF token
	return b
}

func TestSignIn(t *testing.T) {
	f := newFixture(t)
	b := f.browser(t)
	resp, body := b.get("/signin?next=/alarms")
	if resp.StatusCode != 200 || !strings.Contains(body, `name="password"`) {
		t.Fatalf("sign-in page: %d", resp.StatusCode)
	}
	resp, body = b.post("/signin", url.Values{"username": {"ann"}, "password": {"wrong"}, "next": {"/alarms"}})
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "Wrong username or password") {
		t.Errorf("wrong password: %d", resp.StatusCode)
	}
	if cookieNamed(resp, sessionCookie) != nil {
		t.Error("a wrong password set a session cookie")
	}
	resp, _ = b.post("/signin", url.Values{"username": {"ann"}, "password": {adminPass}, "next": {"/alarms"}})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/alarms" {
		t.Fatalf("sign in: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	c := cookieNamed(resp, sessionCookie)
	if c == nil || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Secure {
		t.Errorf("session cookie %+v: want HttpOnly, SameSite=Strict, not Secure on plain HTTP", c)
	}
	if resp, _ := b.get("/alarms"); resp.StatusCode != 200 {
		t.Errorf("signed in, /alarms: %d", resp.StatusCode)
	}
	// Sign out ends the session.
	b.post("/signout", nil)
	if resp, _ := b.get("/alarms"); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("after sign-out, /alarms: %d, want a redirect to sign in", resp.StatusCode)
	}
}

func TestSignInRefusesForgedForms(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		name  string
		setup func(b *browser) url.Values
	}{
		{"no sign-in cookie", func(b *browser) url.Values { return url.Values{"csrf": {"x"}} }},
		{"token does not match cookie", func(b *browser) url.Values { b.get("/signin"); return url.Values{"csrf": {"forged"}} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := f.browser(t)
			form := tt.setup(b)
			form.Set("username", "ann")
			form.Set("password", adminPass)
			resp, _ := b.post("/signin", form)
			if resp.StatusCode != http.StatusForbidden || cookieNamed(resp, sessionCookie) != nil {
				t.Errorf("status %d; want 403 and no session", resp.StatusCode)
			}
		})
	}
}

func TestSignInRedirectStaysOnSite(t *testing.T) {
	for _, next := range []string{"//evil.example/x", "https://evil.example/", "/\\evil.example", "javascript:alert(1)"} {
		if got := safeNext(next); got != "/" {
			t.Errorf("safeNext(%q) = %q, want /", next, got)
		}
	}
	if got := safeNext("/patients/p1?range=24h"); got != "/patients/p1?range=24h" {
		t.Errorf("safeNext kept %q", got)
	}
}

func cookieNamed(resp *http.Response, name string) *http.Cookie {
	for _, c := range resp.Cookies() {
		if c.Name == name && c.Value != "" {
			return c
		}
	}
	return nil
}

func TestPermissions(t *testing.T) {
	f := newFixture(t)
	f.patient(t, "p1", "Pat One")
	a := f.raise(t, "p1", "spo2-low", rules.PriorityMedium)
	anon := f.browser(t)
	ann := f.signedIn(t, "ann", adminPass)
	ivan := f.signedIn(t, "ivan", integPass)
	tests := []struct {
		who          *browser
		name         string
		method, path string
		form         url.Values
		want         int
	}{
		{anon, "anonymous", "GET", "/", nil, http.StatusSeeOther},
		{anon, "anonymous", "GET", "/patients/p1", nil, http.StatusSeeOther},
		{anon, "anonymous", "GET", "/alarms", nil, http.StatusSeeOther},
		{anon, "anonymous", "GET", "/devices", nil, http.StatusSeeOther},
		{anon, "anonymous", "GET", "/admin/users", nil, http.StatusSeeOther},
		{anon, "anonymous", "GET", "/events/ward", nil, http.StatusUnauthorized},
		{anon, "anonymous", "GET", "/patients/p1/series?code=8867-4&range=1h", nil, http.StatusUnauthorized},
		{anon, "anonymous", "POST", "/alarms/" + a.ID + "/ack", nil, http.StatusUnauthorized},
		{anon, "anonymous", "POST", "/devices", url.Values{"id": {"x1"}}, http.StatusUnauthorized},
		{ivan, "integration", "GET", "/", nil, 200},
		{ivan, "integration", "GET", "/patients/p1", nil, 200},
		{ivan, "integration", "GET", "/alarms", nil, 200},
		{ivan, "integration", "GET", "/devices", nil, 200},
		{ivan, "integration", "GET", "/admin/users", nil, http.StatusForbidden},
		{ivan, "integration", "POST", "/devices", url.Values{"id": {"x1"}}, http.StatusForbidden},
		{ivan, "integration", "POST", "/admin/users", url.Values{"username": {"eve"}, "role": {"admin"}}, http.StatusForbidden},
		{ivan, "integration", "POST", "/alarms/" + a.ID + "/ack", url.Values{"back": {"/alarms"}}, http.StatusSeeOther},
		{ann, "admin", "GET", "/admin/users", nil, 200},
		{ann, "admin", "GET", "/patients/nope", nil, http.StatusNotFound},
		{ann, "admin", "POST", "/devices", url.Values{"id": {"x1"}}, 200},
		{ann, "admin", "POST", "/alarms/nope/ack", nil, http.StatusNotFound},
		{ann, "admin", "POST", "/alarms/" + a.ID + "/explode", nil, http.StatusNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name+" "+tt.method+" "+tt.path, func(t *testing.T) {
			var resp *http.Response
			if tt.method == "GET" {
				resp, _ = tt.who.get(tt.path)
			} else {
				resp, _ = tt.who.post(tt.path, tt.form)
			}
			if resp.StatusCode != tt.want {
				t.Errorf("status %d, want %d", resp.StatusCode, tt.want)
			}
		})
	}
	if _, err := f.st.Device(context.Background(), "x1"); err != nil {
		t.Errorf("the admin's registration did not store the device: %v", err)
	}
	if n, _ := f.st.CountUsers(context.Background(), store.RoleAdmin); n != 1 {
		t.Errorf("%d admins after a refused user creation, want 1", n)
	}
}

func TestCSRF(t *testing.T) {
	f := newFixture(t)
	f.patient(t, "p1", "Pat One")
	a := f.raise(t, "p1", "spo2-low", rules.PriorityMedium)
	ann := f.signedIn(t, "ann", adminPass)
	tests := []struct {
		name   string
		token  string
		header map[string]string
	}{
		{"no token", "", nil},
		{"wrong token", "forged", nil},
		{"cross-site origin", ann.csrf, map[string]string{"Origin": "https://evil.example"}},
		{"cross-site fetch", ann.csrf, map[string]string{"Sec-Fetch-Site": "cross-site"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest("POST", f.srv.URL+"/alarms/"+a.ID+"/ack", strings.NewReader(url.Values{"csrf": {tt.token}}.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			for k, v := range tt.header {
				req.Header.Set(k, v)
			}
			resp, err := ann.c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusForbidden {
				t.Errorf("status %d, want 403", resp.StatusCode)
			}
		})
	}
	got, _ := f.db.Alarm(context.Background(), a.ID)
	if got.State != alarm.Active {
		t.Errorf("a forged request changed the alarm to %s", got.State)
	}
}

func TestSecurityHeaders(t *testing.T) {
	f := newFixture(t)
	resp, _ := f.browser(t).get("/signin")
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") {
		t.Errorf("CSP %q", csp)
	}
	if resp.Header.Get("X-Frame-Options") != "DENY" || resp.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("headers %v", resp.Header)
	}
	resp, body := f.browser(t).get("/assets/vendor/htmx.min.js")
	if resp.StatusCode != 200 || !strings.Contains(body, "htmx") {
		t.Errorf("embedded htmx: %d", resp.StatusCode)
	}
}

func TestWardOverview(t *testing.T) {
	f := newFixture(t)
	now := epoch.Add(time.Hour)
	f.set(now)
	f.patient(t, "calm", "Carl Calm")
	f.patient(t, "sick", "Sara Sick")
	f.patient(t, "evil", `<script>alert("x")</script>`)
	f.readings(t,
		vitalReading("calm", codes.HeartRate, 72, now.Add(-30*time.Second)),
		vitalReading("calm", codes.OxygenSaturation, 98, now.Add(-30*time.Second)),
		vitalReading("calm", codes.RespiratoryRate, 14, now.Add(-time.Hour)), // stale
		vitalReading("sick", codes.HeartRate, 135, now.Add(-10*time.Second)),
		vitalReading("sick", codes.OxygenSaturation, 88, now.Add(-10*time.Second)),
		vitalReading("sick", codes.RespiratoryRate, 28, now.Add(-10*time.Second)),
		reading.Reading{Patient: "sick", Device: "dev-sick", Code: codes.Battery, Value: 17, HasValue: true, Unit: "%", Time: now.Add(-time.Minute), Source: "test"},
	)
	f.raise(t, "sick", "spo2-critical", rules.PriorityHigh)
	ann := f.signedIn(t, "ann", adminPass)
	resp, body := ann.get("/")
	if resp.StatusCode != 200 {
		t.Fatalf("overview: %d", resp.StatusCode)
	}
	for _, want := range []string{
		`sse-connect="/events/ward"`,
		`&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;`, // escaped, never markup
		`Battery 17 %`,
		`spo2-critical`,
		`class="vital stale"`, // calm's respiration rate is an hour old
	} {
		if !strings.Contains(body, want) {
			t.Errorf("overview lacks %q", want)
		}
	}
	if strings.Contains(body, `<script>alert`) {
		t.Error("a patient name was rendered as markup")
	}
	// Acuity: the patient with a high-priority alarm comes first.
	if i, j := strings.Index(body, "Sara Sick"), strings.Index(body, "Carl Calm"); i < 0 || j < 0 || i > j {
		t.Errorf("Sara (high alarm) should be listed before Carl: %d, %d", i, j)
	}
	if !strings.Contains(body, "band-high") && !strings.Contains(body, "band-medium") {
		t.Error("Sara's NEWS2 (HR 135, SpO2 88, RR 28) is not shown in a medium or high band")
	}
	_, byName := ann.get("/?sort=name")
	if i, j := strings.Index(byName, "Carl Calm"), strings.Index(byName, "Sara Sick"); i > j {
		t.Error("sort=name does not list Carl before Sara")
	}
}

// events reads events from a dashboard stream. It returns once the
// response has begun, which the server sends only after it subscribed to
// the hub.
func (b *browser) events(t *testing.T, path string) <-chan [2]string {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, "GET", b.f.srv.URL+path, nil)
	resp, err := b.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("%s: %d %s", path, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	out := make(chan [2]string, 100)
	go func() {
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		var name string
		var data []string
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "event: "):
				name = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				data = append(data, strings.TrimPrefix(line, "data: "))
			case line == "" && name != "":
				out <- [2]string{name, strings.Join(data, "\n")}
				name, data = "", nil
			}
		}
		close(out)
	}()
	return out
}

func waitEvent(t *testing.T, c <-chan [2]string, name, contains string) string {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case ev, ok := <-c:
			if !ok {
				t.Fatalf("stream ended before a %q event with %q", name, contains)
			}
			if ev[0] == name && strings.Contains(ev[1], contains) {
				return ev[1]
			}
		case <-deadline:
			t.Fatalf("no %q event with %q", name, contains)
		}
	}
}

func publishReading(hub *live.Hub, rd reading.Reading) {
	b, _ := json.Marshal(rd)
	hub.Publish(live.Event{Type: live.TypeReading, Patient: rd.Patient, Data: b})
}

func TestWardEventsCarryRenderedTiles(t *testing.T) {
	f := newFixture(t)
	f.set(epoch)
	f.patient(t, "p1", "Pat <b>One</b>")
	f.patient(t, "p2", "Pat Two")
	ann := f.signedIn(t, "ann", adminPass)
	evs := ann.events(t, "/events/ward")
	publishReading(f.hub, vitalReading("p1", codes.HeartRate, 141, epoch))
	tile := waitEvent(t, evs, eventName("p1"), ">141<")
	if !strings.Contains(tile, "Pat &lt;b&gt;One&lt;/b&gt;") {
		t.Errorf("tile does not escape the name: %s", tile)
	}
	// An alarm change reaches the tile too.
	f.raise(t, "p1", "hr-high", rules.PriorityHigh)
	waitEvent(t, evs, eventName("p1"), "prio-high")
}

func TestPatientEventsCarryChartPoints(t *testing.T) {
	f := newFixture(t)
	f.patient(t, "p1", "Pat One")
	f.patient(t, "p2", "Pat Two")
	ann := f.signedIn(t, "ann", adminPass)
	evs := ann.events(t, "/events/ward?patient=p1")
	publishReading(f.hub, vitalReading("p2", codes.HeartRate, 99, epoch)) // another patient: not sent
	publishReading(f.hub, vitalReading("p1", codes.HeartRate, 77, epoch))
	pt := waitEvent(t, evs, "reading", `"code":"8867-4"`)
	if !strings.Contains(pt, `"v":77`) {
		t.Errorf("chart point %s", pt)
	}
}

func TestPatientPage(t *testing.T) {
	f := newFixture(t)
	now := epoch.Add(2 * time.Hour)
	f.set(now)
	f.patient(t, "p1", "Pat One")
	if err := f.st.CreateDevice(context.Background(), &store.Device{ID: "dev-p1", Patient: "p1", Resource: []byte(`{"resourceType":"Device"}`)}, epoch); err != nil {
		t.Fatal(err)
	}
	var rs []reading.Reading
	for i := range 120 {
		rs = append(rs, vitalReading("p1", codes.HeartRate, float64(60+i%20), now.Add(-time.Duration(i)*30*time.Second)))
	}
	f.readings(t, rs...)
	a := f.raise(t, "p1", "hr-high", rules.PriorityMedium)
	ann := f.signedIn(t, "ann", adminPass)
	resp, body := ann.get("/patients/p1?range=24h")
	if resp.StatusCode != 200 {
		t.Fatalf("patient page: %d", resp.StatusCode)
	}
	for _, want := range []string{`data-code="8867-4"`, `data-range="24h"`, `sse-connect="/events/ward?patient=p1"`, "dev-p1", "hr-high", `/assets/chart.js`} {
		if !strings.Contains(body, want) {
			t.Errorf("patient page lacks %q", want)
		}
	}
	_ = a
	tests := []struct {
		query   string
		status  int
		buckets func(n int) bool
	}{
		{"code=8867-4&range=1h", 200, func(n int) bool { return n >= 100 && n <= 121 }}, // 10 s buckets, one reading per 30 s
		{"code=8867-4&range=24h", 200, func(n int) bool { return n >= 15 && n <= 16 }},  // 4 min buckets over one hour
		{"code=8867-4&range=1y", 400, nil},
		{"range=1h", 400, nil},
	}
	for _, tt := range tests {
		resp, body := ann.get("/patients/p1/series?" + tt.query)
		if resp.StatusCode != tt.status {
			t.Errorf("%s: status %d, want %d", tt.query, resp.StatusCode, tt.status)
			continue
		}
		if tt.buckets == nil {
			continue
		}
		var s seriesJSON
		if err := json.Unmarshal([]byte(body), &s); err != nil {
			t.Fatalf("%s: %v", tt.query, err)
		}
		if !tt.buckets(len(s.T)) || len(s.Mean) != len(s.T) {
			t.Errorf("%s: %d buckets", tt.query, len(s.T))
		}
	}
}

func TestAlarmInboxActions(t *testing.T) {
	f := newFixture(t)
	f.set(epoch)
	f.patient(t, "p1", "Pat One")
	low := f.raise(t, "p1", "temp-low", rules.PriorityLow)
	f.set(epoch.Add(time.Minute))
	high := f.raise(t, "p1", "spo2-critical", rules.PriorityHigh)
	ann := f.signedIn(t, "ann", adminPass)
	_, body := ann.get("/alarms")
	if i, j := strings.Index(body, "spo2-critical"), strings.Index(body, "temp-low"); i < 0 || j < 0 || i > j {
		t.Errorf("high-priority alarm should be listed first: %d, %d", i, j)
	}
	if !strings.Contains(body, `data-new-high="`+high.ID+`"`) {
		t.Error("a new high-priority alarm is not marked to flash")
	}
	evs := ann.events(t, "/events/alarms")

	tests := []struct {
		name   string
		path   string
		form   url.Values
		status int
		state  alarm.State
		id     string
	}{
		{"snooze needs a reason", "/alarms/" + high.ID + "/snooze", url.Values{"for": {"5m"}}, 400, alarm.Active, high.ID},
		{"snooze over the limit", "/alarms/" + high.ID + "/snooze", url.Values{"for": {"2h"}, "reason": {"busy"}}, 409, alarm.Active, high.ID},
		{"acknowledge", "/alarms/" + high.ID + "/ack", url.Values{"back": {"/alarms"}}, 303, alarm.Acknowledged, high.ID},
		{"snooze", "/alarms/" + low.ID + "/snooze", url.Values{"for": {"30m"}, "reason": {"turning patient"}}, 303, alarm.Active, low.ID},
		{"resolve", "/alarms/" + low.ID + "/resolve", url.Values{"reason": {"checked"}}, 303, alarm.Resolved, low.ID},
		{"resolve again", "/alarms/" + low.ID + "/resolve", nil, 409, alarm.Resolved, low.ID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, _ := ann.post(tt.path, tt.form)
			if resp.StatusCode != tt.status {
				t.Errorf("status %d, want %d", resp.StatusCode, tt.status)
			}
			got, err := f.db.Alarm(context.Background(), tt.id)
			if err != nil {
				t.Fatal(err)
			}
			if got.State != tt.state {
				t.Errorf("state %s, want %s", got.State, tt.state)
			}
		})
	}
	got, _ := f.db.Alarm(context.Background(), high.ID)
	if got.AckedBy != "ann" {
		t.Errorf("acknowledged by %q, want the signed-in user", got.AckedBy)
	}
	// The live inbox shows who acted.
	waitEvent(t, evs, "inbox", "acknowledged by ann")
	_, body = ann.get("/alarms")
	if !strings.Contains(body, "resolved by ann") {
		t.Error("the inbox does not say who resolved the alarm")
	}
}

func TestRegisterDevice(t *testing.T) {
	f := newFixture(t)
	f.patient(t, "p1", "Pat One")
	ann := f.signedIn(t, "ann", adminPass)
	ann.get("/devices")
	name := `<script>document.title="pwned"</script>`
	resp, body := ann.post("/devices", url.Values{"id": {"cuff-1"}, "name": {name}, "patient": {"p1"}})
	if resp.StatusCode != 200 || resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("register: %d, Cache-Control %q", resp.StatusCode, resp.Header.Get("Cache-Control"))
	}
	m := regexp.MustCompile(`class="secret">([A-Za-z0-9_-]+)<`).FindStringSubmatch(body)
	if m == nil {
		t.Fatal("the credentials page shows no secret")
	}
	hash, err := f.st.DeviceSecret(context.Background(), "cuff-1")
	if err != nil || !auth.SecretMatches(m[1], hash) {
		t.Errorf("the shown secret is not the stored one (%v)", err)
	}
	dev, _ := f.st.Device(context.Background(), "cuff-1")
	if dev.Patient != "p1" || deviceName(dev) != name {
		t.Errorf("stored device %+v", dev)
	}
	_, list := ann.get("/devices")
	if !strings.Contains(list, "cuff-1") || strings.Contains(list, "<script>document") || !strings.Contains(list, "&lt;script&gt;") {
		t.Error("the fleet list does not show the new device with its name escaped")
	}
	if strings.Contains(list, m[1]) {
		t.Error("the fleet list shows the secret again")
	}
	// A new secret replaces the old one and closes the device's connections.
	resp, body = ann.post("/devices/cuff-1/credentials", nil)
	m2 := regexp.MustCompile(`class="secret">([A-Za-z0-9_-]+)<`).FindStringSubmatch(body)
	if resp.StatusCode != 200 || m2 == nil || m2[1] == m[1] {
		t.Fatalf("rotate: %d", resp.StatusCode)
	}
	hash, _ = f.st.DeviceSecret(context.Background(), "cuff-1")
	if auth.SecretMatches(m[1], hash) || !auth.SecretMatches(m2[1], hash) {
		t.Error("the old secret still works after rotation")
	}
	if len(f.kick.kicked) == 0 || f.kick.kicked[len(f.kick.kicked)-1] != "cuff-1" {
		t.Errorf("kicked %v", f.kick.kicked)
	}
	tests := []struct {
		form   url.Values
		status int
	}{
		{url.Values{"id": {"cuff-1"}}, http.StatusConflict},
		{url.Values{"id": {"bad id/../x"}}, http.StatusBadRequest},
		{url.Values{"id": {"cuff-2"}, "patient": {"nobody"}}, http.StatusBadRequest},
		{url.Values{"name": {"generated id"}}, http.StatusOK},
	}
	for _, tt := range tests {
		ann.get("/devices")
		if resp, _ := ann.post("/devices", tt.form); resp.StatusCode != tt.status {
			t.Errorf("register %v: %d, want %d", tt.form, resp.StatusCode, tt.status)
		}
	}
}

func TestCreateUser(t *testing.T) {
	f := newFixture(t)
	ann := f.signedIn(t, "ann", adminPass)
	ann.get("/admin/users")
	resp, body := ann.post("/admin/users", url.Values{"username": {"nina"}, "name": {"Nina Nurse"}, "role": {"integration"}})
	m := regexp.MustCompile(`class="secret">([A-Za-z0-9_-]+)<`).FindStringSubmatch(body)
	if resp.StatusCode != 200 || m == nil {
		t.Fatalf("create user: %d", resp.StatusCode)
	}
	nina := f.signedIn(t, "nina", m[1])
	if resp, _ := nina.get("/alarms"); resp.StatusCode != 200 {
		t.Errorf("the new user cannot see alarms: %d", resp.StatusCode)
	}
	for _, form := range []url.Values{
		{"username": {"nina"}, "role": {"admin"}},
		{"username": {"x"}, "role": {"superuser"}},
	} {
		ann.get("/admin/users")
		if resp, _ := ann.post("/admin/users", form); resp.StatusCode < 400 {
			t.Errorf("create %v: %d, want an error", form, resp.StatusCode)
		}
	}
}

func TestMount(t *testing.T) {
	api := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "api") })
	dash := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "dashboard") })
	h := Mount(api, dash)
	for path, want := range map[string]string{
		"/api/v1/alarms": "api", "/fhir/Patient": "api", "/fhir": "api", "/healthz": "api", "/readyz": "api", "/metrics": "api",
		"/": "dashboard", "/alarms": "dashboard", "/assets/app.css": "dashboard", "/fhirish": "dashboard", "/apix": "dashboard",
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		if rec.Body.String() != want {
			t.Errorf("%s served by %s, want %s", path, rec.Body.String(), want)
		}
	}
}

func TestBindDevice(t *testing.T) {
	f := newFixture(t)
	f.patient(t, "p1", "Pat One")
	f.patient(t, "p2", "Pat Two")
	ctx := context.Background()
	if err := f.st.CreateDevice(ctx, &store.Device{ID: "cuff", Resource: []byte(`{"resourceType":"Device","id":"cuff","manufacturer":"Acme"}`)}, epoch); err != nil {
		t.Fatal(err)
	}
	ann := f.signedIn(t, "ann", adminPass)
	ivan := f.signedIn(t, "ivan", integPass)
	tests := []struct {
		name    string
		who     *browser
		path    string
		form    url.Values
		status  int
		patient string // the device's binding afterwards
	}{
		{"integration may not bind", ivan, "/patients/p1/devices", url.Values{"device": {"cuff"}}, http.StatusForbidden, ""},
		{"bind", ann, "/patients/p1/devices", url.Values{"device": {"cuff"}}, http.StatusSeeOther, "p1"},
		{"unbind from another patient", ann, "/patients/p2/devices", url.Values{"device": {"cuff"}, "unbind": {"1"}}, http.StatusConflict, "p1"},
		{"move to another patient", ann, "/patients/p2/devices", url.Values{"device": {"cuff"}}, http.StatusSeeOther, "p2"},
		{"unbind", ann, "/patients/p2/devices", url.Values{"device": {"cuff"}, "unbind": {"1"}}, http.StatusSeeOther, ""},
		{"unknown device", ann, "/patients/p1/devices", url.Values{"device": {"nope"}}, http.StatusNotFound, ""},
		{"unknown patient", ann, "/patients/nobody/devices", url.Values{"device": {"cuff"}}, http.StatusNotFound, ""},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f.set(epoch.Add(time.Duration(i+1) * time.Minute)) // binding history only moves forward
			tt.who.get("/patients/p1")
			resp, _ := tt.who.post(tt.path, tt.form)
			if resp.StatusCode != tt.status {
				t.Errorf("status %d, want %d", resp.StatusCode, tt.status)
			}
			dev, err := f.st.Device(ctx, "cuff")
			if err != nil {
				t.Fatal(err)
			}
			if dev.Patient != tt.patient {
				t.Errorf("bound to %q, want %q", dev.Patient, tt.patient)
			}
			if !strings.Contains(string(dev.Resource), `"manufacturer":"Acme"`) {
				t.Errorf("the device's resource lost its other elements: %s", dev.Resource)
			}
		})
	}
	bs, err := f.st.Bindings(ctx, "cuff")
	if err != nil || len(bs) != 2 || bs[0].Patient != "p1" || bs[1].Patient != "p2" || bs[1].To.IsZero() {
		t.Errorf("binding history %+v (%v), want p1 then p2, closed", bs, err)
	}
}
