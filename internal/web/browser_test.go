package web_test

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/tendhealth/tend/internal/auth"
	"github.com/tendhealth/tend/internal/node"
	"github.com/tendhealth/tend/internal/store"
	"github.com/tendhealth/tend/internal/totp"
)

var updateScreenshots = flag.Bool("update-screenshots", false, "copy the browser test's screenshots to docs/screenshots")

const (
	testToken = "web-test-admin-token-0123456789abcdef"
	nurseName = "nurse"
	nursePass = "correct horse battery staple"
	// Both are hostile: if either ran, window.__pwned would be set.
	evilDevice  = `<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">`
	evilPatient = `<img src=x onerror="window.__pwned=3">Eve`
)

// tendNode runs a whole Tend node in-process, as `tend serve` does.
type tendNode struct {
	t    testing.TB
	n    *node.Node
	base string
}

func startTend(t testing.TB) *tendNode {
	t.Helper()
	dir := t.TempDir()
	n := node.New(node.Config{DataDir: dir, HTTPAddr: "127.0.0.1:0", MQTTAddr: node.Off, MLLPAddr: node.Off,
		BootstrapToken: testToken, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Console: io.Discard})
	if err := n.Start(context.Background()); err != nil {
		t.Fatalf("start node: %v", err)
	}
	t.Cleanup(func() { n.Close() })
	return &tendNode{t: t, n: n, base: "http://" + n.Addrs().HTTP}
}

func (c *tendNode) call(method, path, token, ctype, body string, want int) map[string]any {
	c.t.Helper()
	req, _ := http.NewRequest(method, c.base+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		c.t.Fatalf("%s %s: %d, want %d: %s", method, path, resp.StatusCode, want, b)
	}
	var m map[string]any
	json.Unmarshal(b, &m)
	return m
}

// patientWithDevice creates a patient and a bound device with a secret.
func (c *tendNode) patientWithDevice(name string) (patient, device, secret string) {
	c.t.Helper()
	res, _ := json.Marshal(map[string]any{"resourceType": "Patient", "name": []map[string]string{{"text": name}}})
	patient = c.call("POST", "/fhir/Patient", testToken, "application/fhir+json", string(res), 201)["id"].(string)
	device = c.call("POST", "/fhir/Device", testToken, "application/fhir+json",
		fmt.Sprintf(`{"resourceType":"Device","patient":{"reference":"Patient/%s"}}`, patient), 201)["id"].(string)
	secret = c.call("POST", "/api/v1/devices/"+device+"/credentials", testToken, "", "", 200)["secret"].(string)
	return patient, device, secret
}

func (c *tendNode) send(device, secret, senml string) {
	c.t.Helper()
	c.call("POST", "/api/v1/devices/"+device+"/obs", secret, "application/senml+json", senml, 202)
}

func (c *tendNode) addUser(t testing.TB, id, password string, role store.Role) {
	t.Helper()
	if err := c.n.Store().CreateUser(context.Background(), store.User{ID: id, Name: "Nora Nurse", Role: role,
		PasswordHash: auth.HashPassword(password), Created: time.Now().UTC()}); err != nil {
		t.Fatal(err)
	}
}

// chromium finds Debian's browser, or skips the test saying why.
func chromium(t testing.TB) string {
	for _, p := range []string{"chromium", "chromium-browser", "/usr/bin/chromium"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	t.Skip("skipped: chromium is not installed (apt-get install -y chromium)")
	return ""
}

// newBrowser starts headless Chromium with a fresh profile and nothing
// that would reach the network on its own.
func newBrowser(t testing.TB) (context.Context, *consoleLog) {
	path := chromium(t)
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(path), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck, chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 900),
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("disable-quic", true), chromedp.Flag("disable-dev-shm-usage", true))
	ctx, cancelCtx := chromedp.NewContext(alloc)
	ctx, cancelTimeout := context.WithTimeout(ctx, 2*time.Minute)
	t.Cleanup(func() { cancelTimeout(); cancelCtx(); cancelAlloc() })
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	log := &consoleLog{}
	go func() {
		for m, err := range chromedp.Console(ctx) {
			if err != nil {
				return
			}
			log.add(string(m.Type) + ": " + m.Text)
		}
	}()
	return ctx, log
}

// consoleLog keeps what the pages wrote to the console (errors, CSP
// violations, uncaught exceptions).
type consoleLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *consoleLog) add(s string) {
	l.mu.Lock()
	l.lines = append(l.lines, s)
	l.mu.Unlock()
}

func (l *consoleLog) problems() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, s := range l.lines {
		if strings.HasPrefix(s, "error") || strings.HasPrefix(s, "exception") || strings.Contains(s, "Content Security Policy") {
			out = append(out, s)
		}
	}
	return out
}

// screenshot saves a full-page PNG under test-artifacts/web (ignored by
// git) and, with -update-screenshots, under docs/screenshots.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Errorf("screenshot %s: %v", name, err)
		return
	}
	dirs := []string{filepath.Join("..", "..", "test-artifacts", "web")}
	if *updateScreenshots {
		dirs = append(dirs, filepath.Join("..", "..", "docs", "screenshots"))
	}
	for _, dir := range dirs {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func must(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func TestBrowser(t *testing.T) {
	ctx, console := newBrowser(t)
	tend := startTend(t)
	tend.addUser(t, nurseName, nursePass, store.RoleAdmin)
	jane, janeDev, janeSecret := tend.patientWithDevice("Jane Doe")
	evePatient, eveDev, eveSecret := tend.patientWithDevice(evilPatient)
	tend.send(janeDev, janeSecret, `[{"n":"8867-4","u":"/min","v":72},{"n":"59408-5","u":"%","v":97},{"n":"9279-1","u":"/min","v":16},{"n":"battery","u":"%","v":64}]`)
	tend.send(eveDev, eveSecret, `[{"n":"8867-4","u":"/min","v":118},{"n":"59408-5","u":"%","v":91},{"n":"9279-1","u":"/min","v":24}]`)
	base := tend.base

	t.Run("sign in", func(t *testing.T) {
		must(t, ctx, "open the dashboard", chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.CSS(`#username`)))
		loc, _ := chromedp.Run(ctx, chromedp.Location())
		if !strings.Contains(loc, "/signin") {
			t.Fatalf("not sent to sign in: %s", loc)
		}
		screenshot(t, ctx, "signin")
		must(t, ctx, "sign in",
			chromedp.SendKeys(chromedp.CSS(`#username`), nurseName),
			chromedp.SendKeys(chromedp.CSS(`#password`), nursePass),
			chromedp.Submit(chromedp.CSS(`#password`)),
			chromedp.WaitVisible(chromedp.CSS(`.tiles`)))
	})

	t.Run("a reading appears live", func(t *testing.T) {
		must(t, ctx, "wait for the live stream",
			chromedp.Poll[chromedp.Void](`document.querySelector(".live-status.on") !== null`, chromedp.WithPollingTimeout(10*time.Second)))
		start := time.Now()
		tend.send(janeDev, janeSecret, `[{"n":"8867-4","u":"/min","v":123}]`)
		must(t, ctx, "see heart rate 123 on Jane's tile",
			chromedp.Poll[chromedp.Void](`Array.from(document.querySelectorAll(".tile")).some(t => t.textContent.includes("Jane Doe") && Array.from(t.querySelectorAll(".value")).some(v => v.textContent === "123"))`,
				chromedp.WithPollingInterval(10*time.Millisecond), chromedp.WithPollingTimeout(5*time.Second)))
		latency := time.Since(start)
		t.Logf("reading to page: %v (HTTP ingest, durable commit, store, live hub, SSE, htmx swap)", latency)
		if latency > time.Second {
			t.Errorf("the reading took %v to reach the page, want under 1 s", latency)
		}
		screenshot(t, ctx, "ward")
		must(t, ctx, "phone layout", chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2)))
		screenshot(t, ctx, "ward-phone")
		must(t, ctx, "desktop layout", chromedp.EmulateViewport(1280, 900))
	})

	t.Run("acknowledge an alarm", func(t *testing.T) {
		must(t, ctx, "open the inbox", chromedp.Navigate(base+"/alarms"),
			chromedp.Poll[chromedp.Void](`document.querySelector(".live-status.on") !== null`, chromedp.WithPollingTimeout(10*time.Second)))
		tend.send(janeDev, janeSecret, `[{"n":"fall","v":1}]`) // a fall is a high-priority event alarm
		id, err := chromedp.Run(ctx, chromedp.Poll[string](
			`(Array.from(document.querySelectorAll("li.alarm.prio-high.state-active")).find(li => li.textContent.includes("Fall detected")) || {}).id`,
			chromedp.WithPollingTimeout(5*time.Second)))
		if err != nil {
			t.Fatalf("the fall alarm did not arrive live: %v", err)
		}
		flashed, _ := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.body.classList.contains("flash")`))
		if !flashed {
			t.Error("a new high-priority alarm did not flash the page")
		}
		screenshot(t, ctx, "alarms")
		must(t, ctx, "acknowledge", chromedp.Click(chromedp.CSS(`#`+id+` button.ack`)),
			chromedp.WaitNotPresent(chromedp.CSS(`#`+id+` button.ack`)))
		alarmID := strings.TrimPrefix(id, "alarm-")
		got := tend.call("GET", "/api/v1/alarms/"+alarmID, testToken, "", "", 200)
		if a, _ := got["alarm"].(map[string]any); a["acknowledged_by"] != nurseName || a["patient"] != jane {
			t.Errorf("after the click the API has %v", got["alarm"])
		}
		// The fall's condition had cleared, so acknowledging it resolved it.
		text, _ := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`ol.resolved`)))
		if !strings.Contains(text, "Fall detected") || !strings.Contains(text, "acknowledged by "+nurseName) {
			t.Errorf("recently resolved says %q, want the fall and who acknowledged it", text)
		}
		screenshot(t, ctx, "alarms-acknowledged")
	})

	t.Run("patient page", func(t *testing.T) {
		must(t, ctx, "open Jane", chromedp.Navigate(base+"/patients/"+jane),
			chromedp.WaitVisible(chromedp.CSS(`.chart canvas`)))
		screenshot(t, ctx, "patient")
	})

	t.Run("hostile strings render inert", func(t *testing.T) {
		must(t, ctx, "register a device named with markup", chromedp.Navigate(base+"/devices"),
			chromedp.SendKeys(chromedp.CSS(`#dev-id`), "evil-cuff"),
			chromedp.SetValue(chromedp.CSS(`#dev-name`), evilDevice),
			chromedp.SendKeys(chromedp.CSS(`#dev-patient`), evePatient),
			chromedp.Submit(chromedp.CSS(`#dev-name`)),
			chromedp.WaitVisible(chromedp.CSS(`code.secret`)))
		screenshot(t, ctx, "device-credentials")
		tend.send(eveDev, eveSecret, `[{"n":"battery","u":"%","v":12}]`)
		must(t, ctx, "open the fleet", chromedp.Navigate(base+"/devices"), chromedp.WaitVisible(chromedp.CSS(`table.list`)))
		screenshot(t, ctx, "devices")
		page, _ := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`table.list`)))
		if !strings.Contains(page, evilDevice) {
			t.Errorf("the device's name is not shown as text: %q", page)
		}
		must(t, ctx, "open the overview", chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.CSS(`.tiles`)))
		pwned, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`window.__pwned !== undefined`))
		if err != nil || pwned {
			t.Errorf("a hostile string ran as script (pwned=%v, %v)", pwned, err)
		}
		n, _ := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("main script, main img").length`))
		if n != 0 {
			t.Errorf("%d script or img elements came from data", n)
		}
	})

	t.Run("admin", func(t *testing.T) {
		must(t, ctx, "open users", chromedp.Navigate(base+"/admin/users"), chromedp.WaitVisible(chromedp.CSS(`#u-name`)))
		screenshot(t, ctx, "admin-users")
		must(t, ctx, "open care teams", chromedp.Navigate(base+"/admin/teams"), chromedp.WaitVisible(chromedp.CSS(`#team-name`)))
		must(t, ctx, "verify the audit trail", chromedp.Navigate(base+"/audit"), chromedp.WaitVisible(chromedp.CSS(`table.audit`)),
			chromedp.Click(chromedp.CSS(`form[action="/audit/verify"] button`)), chromedp.WaitVisible(chromedp.CSS(`p.notice`)))
		screenshot(t, ctx, "audit")
	})

	t.Run("authenticator app", func(t *testing.T) {
		must(t, ctx, "open account", chromedp.Navigate(base+"/account"), chromedp.WaitVisible(chromedp.CSS(`#totp-secret`)))
		screenshot(t, ctx, "account")
		key, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`#totp-secret`)))
		if err != nil {
			t.Fatalf("read the key: %v", err)
		}
		secret, err := totp.DecodeSecret(key)
		if err != nil {
			t.Fatalf("key on the page %q: %v", key, err)
		}
		must(t, ctx, "switch it on",
			chromedp.SendKeys(chromedp.CSS(`#totp-code`), totp.Generate(secret, time.Now())),
			chromedp.Submit(chromedp.CSS(`#totp-code`)),
			chromedp.WaitVisible(chromedp.CSS(`.totp-on`)))
		must(t, ctx, "sign out",
			chromedp.Click(chromedp.CSS(`.signout button`)),
			chromedp.WaitVisible(chromedp.CSS(`#code`)))
		// The next step's code: the enrolment used up this one, and the
		// next is within the accepted window, so nothing waits for a step.
		must(t, ctx, "sign in with a code",
			chromedp.SendKeys(chromedp.CSS(`#username`), nurseName),
			chromedp.SendKeys(chromedp.CSS(`#password`), nursePass),
			chromedp.SendKeys(chromedp.CSS(`#code`), totp.Generate(secret, time.Now().Add(totp.Period))),
			chromedp.Submit(chromedp.CSS(`#password`)),
			chromedp.WaitVisible(chromedp.CSS(`.tiles`)))
	})

	for _, p := range console.problems() {
		// The hostile <img src=x> is never created, so no request for it may
		// fail either; any console error is a defect of the pages.
		t.Errorf("browser console: %s", p)
	}
}
