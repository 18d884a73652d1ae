package web

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tendhealth/tend/internal/signin"
	"github.com/tendhealth/tend/internal/store"
	"github.com/tendhealth/tend/internal/totp"
)

// withRequiredTOTP rebuilds the dashboard so that roles must use a second factor.
func (f *fixture) withRequiredTOTP(t *testing.T, roles ...store.Role) {
	t.Helper()
	sealer, err := totp.DerivedSealer([]byte(strings.Repeat("k", 32)))
	if err != nil {
		t.Fatal(err)
	}
	cfg := f.h.cfg
	cfg.SignIn = signin.New(signin.Config{Store: f.st, Sealer: sealer, RequireTOTP: roles, Now: f.clock,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	h, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	f.h = h
	f.srv.Config.Handler = h
}

func (b *browser) sessionCookie() *http.Cookie {
	u, _ := url.Parse(b.f.srv.URL)
	for _, c := range b.c.Jar.Cookies(u) {
		if c.Name == sessionCookie {
			return c
		}
	}
	return nil
}

// withCookie is another browser that holds a copy of b's session cookie.
func (b *browser) stolen(t *testing.T) *browser {
	thief := b.f.browser(t)
	u, _ := url.Parse(b.f.srv.URL)
	thief.c.Jar.SetCookies(u, []*http.Cookie{{Name: sessionCookie, Value: b.sessionCookie().Value}})
	return thief
}

func TestSessionIsServerSide(t *testing.T) {
	f := newFixture(t)
	ann := f.signedIn(t, "ann", adminPass)
	c := ann.sessionCookie()
	if c == nil || len(c.Value) != 43 {
		t.Fatalf("session cookie %+v: want a random 256-bit value", c)
	}
	row, err := f.st.Session(context.Background(), sessionID(c.Value))
	if err != nil || row.User != "ann" || !row.Expires.Equal(epoch.Add(sessionTTL)) || row.Idle != DefaultSessionIdle {
		t.Fatalf("stored session %+v, %v", row, err)
	}
	if strings.Contains(string(row.ID), c.Value) {
		t.Fatal("the store holds the cookie value")
	}
	thief := ann.stolen(t)
	if resp, _ := thief.get("/alarms"); resp.StatusCode != 200 {
		t.Fatalf("a copy of a live cookie: %d", resp.StatusCode)
	}
	if resp, _ := ann.post("/signout", nil); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign out: %d", resp.StatusCode)
	}
	for name, b := range map[string]*browser{"the signed-out browser": ann, "a copy of its cookie": thief} {
		if resp, _ := b.get("/alarms"); resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/signin") {
			t.Errorf("%s after sign-out: %d %s, want a redirect to sign in", name, resp.StatusCode, resp.Header.Get("Location"))
		}
	}
	if _, err := f.st.Session(context.Background(), sessionID(c.Value)); err == nil {
		t.Error("the session row survived sign-out")
	}
}

func TestSignOutNeedsCSRF(t *testing.T) {
	f := newFixture(t)
	ann := f.signedIn(t, "ann", adminPass)
	if resp, _ := ann.post("/signout", url.Values{"csrf": {"forged"}}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("forged sign-out: %d, want 403", resp.StatusCode)
	}
	if resp, _ := ann.get("/alarms"); resp.StatusCode != 200 {
		t.Errorf("a forged sign-out ended the session: %d", resp.StatusCode)
	}
}

func TestIdleLogoff(t *testing.T) {
	f := newFixture(t)
	ann := f.signedIn(t, "ann", adminPass)
	// In use every 10 minutes: stays signed in, up to the 12 h limit.
	at := epoch
	for at.Add(10 * time.Minute).Before(epoch.Add(sessionTTL)) {
		at = at.Add(10 * time.Minute)
		f.set(at)
		if resp, _ := ann.get("/alarms"); resp.StatusCode != 200 {
			t.Fatalf("in use, after %v: %d", at.Sub(epoch), resp.StatusCode)
		}
	}
	f.set(epoch.Add(sessionTTL))
	if resp, _ := ann.get("/alarms"); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("after 12 h: %d, want a redirect to sign in", resp.StatusCode)
	}

	f.set(epoch)
	ann = f.signedIn(t, "ann", adminPass)
	f.set(epoch.Add(14 * time.Minute))
	if resp, _ := ann.get("/alarms"); resp.StatusCode != 200 {
		t.Fatalf("idle 14 min: %d", resp.StatusCode)
	}
	f.set(epoch.Add(14*time.Minute + DefaultSessionIdle))
	if resp, _ := ann.get("/alarms"); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("idle 15 min: %d, want a redirect to sign in", resp.StatusCode)
	}
	if _, err := f.st.Session(context.Background(), sessionID(ann.sessionCookie().Value)); err == nil {
		t.Error("an idle session was not deleted when it was next presented")
	}
}

func TestSignInLockout(t *testing.T) {
	f := newFixture(t)
	const msg = "Wrong username or password."
	try := func(user, password string) (int, string) {
		b := f.browser(t)
		b.get("/signin")
		resp, body := b.post("/signin", url.Values{"username": {user}, "password": {password}})
		if cookieNamed(resp, sessionCookie) != nil && resp.StatusCode != http.StatusSeeOther {
			t.Fatal("a refused sign-in set a session cookie")
		}
		return resp.StatusCode, body
	}
	csrf := regexp.MustCompile(`name="csrf" value="[^"]+"`)
	_, unknownBody := try("nobody", "whatever")
	for i := range signin.UserThreshold {
		code, body := try("ann", "wrong-"+string(rune('a'+i)))
		if code != http.StatusUnauthorized || !strings.Contains(body, msg) {
			t.Fatalf("failure %d: %d", i+1, code)
		}
		if csrf.ReplaceAllString(body, "") != csrf.ReplaceAllString(unknownBody, "") {
			t.Fatalf("failure %d: the page differs from an unknown user's", i+1)
		}
	}
	// Locked: the right password gets the same answer.
	code, body := try("ann", adminPass)
	if code != http.StatusUnauthorized || csrf.ReplaceAllString(body, "") != csrf.ReplaceAllString(unknownBody, "") {
		t.Fatalf("locked account with the right password: %d", code)
	}
	// Another user is not affected; the lock ends after a minute.
	if code, _ := try("ivan", integPass); code != http.StatusSeeOther {
		t.Fatalf("another user: %d", code)
	}
	f.set(epoch.Add(signin.BaseLock))
	if code, _ := try("ann", adminPass); code != http.StatusSeeOther {
		t.Fatalf("after the lock: %d", code)
	}
	// Success reset the count: four failures lock nothing.
	for range signin.UserThreshold - 1 {
		try("ann", "wrong")
	}
	if code, _ := try("ann", adminPass); code != http.StatusSeeOther {
		t.Fatalf("after 4 failures: %d", code)
	}
}

var secretOnPage = regexp.MustCompile(`id="totp-secret">([A-Z2-7 ]+)<`)

// enrol sets up ann's authenticator through /account and returns the secret.
func enrol(t *testing.T, f *fixture, b *browser) []byte {
	t.Helper()
	resp, body := b.get("/account")
	m := secretOnPage.FindStringSubmatch(body)
	if resp.StatusCode != 200 || m == nil || !strings.Contains(body, "otpauth://totp/Tend:ann?") {
		t.Fatalf("account page: %d, secret %v", resp.StatusCode, m)
	}
	if _, again := b.get("/account"); secretOnPage.FindStringSubmatch(again)[1] != m[1] {
		t.Fatal("a reload showed another secret")
	}
	secret, err := totp.DecodeSecret(m[1])
	if err != nil {
		t.Fatal(err)
	}
	if resp, _ := b.post("/account/totp", url.Values{"code": {"000000"}}); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("a wrong enrolment code: %d", resp.StatusCode)
	}
	resp, _ = b.post("/account/totp", url.Values{"code": {totp.Generate(secret, f.clock())}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("enrol: %d", resp.StatusCode)
	}
	return secret
}

func TestTOTPSignIn(t *testing.T) {
	f := newFixture(t)
	ann := f.signedIn(t, "ann", adminPass)
	other := f.signedIn(t, "ann", adminPass)
	secret := enrol(t, f, ann)
	if resp, _ := other.get("/alarms"); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("a session opened before enrolment survived it: %d", resp.StatusCode)
	}
	if resp, _ := ann.get("/alarms"); resp.StatusCode != 200 {
		t.Errorf("the enrolling session ended: %d", resp.StatusCode)
	}

	f.set(epoch.Add(time.Minute))
	try := func(code string) int {
		b := f.browser(t)
		b.get("/signin")
		resp, body := b.post("/signin", url.Values{"username": {"ann"}, "password": {adminPass}, "code": {code}})
		if resp.StatusCode != http.StatusSeeOther && !strings.Contains(body, "Wrong username or password.") {
			t.Errorf("refusal without the generic message")
		}
		return resp.StatusCode
	}
	now := totp.Generate(secret, f.clock())
	tests := []struct {
		name string
		code string
		want int
	}{
		{"no code", "", http.StatusUnauthorized},
		{"wrong code", "123456", http.StatusUnauthorized},
		{"the enrolment code again", totp.Generate(secret, epoch), http.StatusUnauthorized},
		{"current code, spaced", now[:3] + " " + now[3:], http.StatusSeeOther},
		{"the same code again", now, http.StatusUnauthorized},
	}
	for _, tc := range tests {
		if got := try(tc.code); got != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, got, tc.want)
		}
	}
	f.set(epoch.Add(time.Minute + totp.Period))
	if got := try(totp.Generate(secret, f.clock())); got != http.StatusSeeOther {
		t.Errorf("next step's code: %d", got)
	}
}

func TestRequiredTOTPGoesToEnrolment(t *testing.T) {
	f := newFixture(t)
	f.withRequiredTOTP(t, store.RoleAdmin)
	b := f.browser(t)
	b.get("/signin")
	resp, _ := b.post("/signin", url.Values{"username": {"ann"}, "password": {adminPass}, "next": {"/devices"}})
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusSeeOther || loc != "/account?next=%2Fdevices" {
		t.Fatalf("sign in: %d to %q, want enrolment", resp.StatusCode, loc)
	}
	b.get("/account")
	for _, path := range []string{"/", "/devices", "/admin/users"} {
		if resp, _ := b.get(path); resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/account") {
			t.Errorf("GET %s before enrolment: %d %s", path, resp.StatusCode, resp.Header.Get("Location"))
		}
	}
	if resp, _ := b.post("/devices", url.Values{"id": {"x1"}}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("POST /devices before enrolment: %d", resp.StatusCode)
	}
	if resp, _ := b.get("/events/ward"); resp.StatusCode != http.StatusForbidden {
		t.Errorf("event stream before enrolment: %d", resp.StatusCode)
	}
	// An integration user (role not listed) goes straight in.
	if ivan := f.signedIn(t, "ivan", integPass); ivan == nil {
		t.Fatal("integration user")
	}
	secret := enrol(t, f, b)
	if resp, _ := b.get("/devices"); resp.StatusCode != 200 {
		t.Errorf("after enrolment: %d", resp.StatusCode)
	}
	if secret == nil {
		t.Fatal("no secret")
	}
}

func TestEventStreamEndsWithSession(t *testing.T) {
	f := newFixture(t)
	f.h.watchEvery = 10 * time.Millisecond
	ann := f.signedIn(t, "ann", adminPass)
	req, _ := http.NewRequest("GET", f.srv.URL+"/events/ward", nil)
	resp, err := ann.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("stream: %d", resp.StatusCode)
	}
	if n, err := f.st.RevokeUserSessions(context.Background(), "ann", nil); err != nil || n != 1 {
		t.Fatalf("revoke: %d, %v", n, err)
	}
	done := make(chan error, 1)
	go func() { _, err := io.Copy(io.Discard, resp.Body); done <- err }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the stream of a revoked session is still open")
	}
}

func TestSecureSessionCookie(t *testing.T) {
	f := newFixture(t)
	srv := httptest.NewTLSServer(f.h)
	t.Cleanup(srv.Close)
	f.srv = srv
	b := f.browser(t)
	b.c.Transport = srv.Client().Transport
	b.get("/signin")
	resp, _ := b.post("/signin", url.Values{"username": {"ann"}, "password": {adminPass}})
	c := cookieNamed(resp, secureSessionCookie)
	if resp.StatusCode != http.StatusSeeOther || c == nil || !c.Secure || !c.HttpOnly || c.Path != "/" || c.Domain != "" ||
		c.SameSite != http.SameSiteStrictMode {
		t.Fatalf("over TLS: %d, cookie %+v; want __Host-, Secure, HttpOnly, Path=/, no Domain, SameSite=Strict", resp.StatusCode, c)
	}
	if resp, _ := b.get("/alarms"); resp.StatusCode != 200 {
		t.Errorf("signed in over TLS, /alarms: %d", resp.StatusCode)
	}
}
