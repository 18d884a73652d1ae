package node_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/tendhealth/tend/internal/notify"
)

// webhookReceiver records signed deliveries, verifying each signature.
type webhookReceiver struct {
	t      testing.TB
	srv    *httptest.Server
	secret []byte
	mu     sync.Mutex
	got    []delivery
	status func(n int) int // answer to the n-th request (from 1); nil = 200
	delay  time.Duration
	n      int
}

type delivery struct {
	key, event string
	alarm      map[string]any
}

func newWebhookReceiver(t testing.TB) *webhookReceiver {
	w := &webhookReceiver{t: t}
	w.srv = httptest.NewServer(http.HandlerFunc(w.serve))
	t.Cleanup(w.srv.Close)
	return w
}

func (w *webhookReceiver) serve(rw http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	w.mu.Lock()
	w.n++
	n, secret, delay, status := w.n, w.secret, w.delay, w.status
	w.mu.Unlock()
	if delay > 0 {
		time.Sleep(delay) // a slow receiver, so deliveries are in flight when the server dies
	}
	if err := notify.VerifySignature(secret, r.Header.Get(notify.HeaderSignature), body, time.Now(), 0); err != nil {
		w.t.Errorf("delivery with a bad signature: %v", err)
		rw.WriteHeader(400)
		return
	}
	if status != nil {
		if code := status(n); code != 200 {
			rw.WriteHeader(code)
			return
		}
	}
	var doc struct {
		Event string         `json:"event"`
		Alarm map[string]any `json:"alarm"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		w.t.Errorf("delivery body is not the alarm JSON: %s", body)
	}
	w.mu.Lock()
	w.got = append(w.got, delivery{key: r.Header.Get(notify.HeaderIdempotencyKey), event: r.Header.Get(notify.HeaderEvent), alarm: doc.Alarm})
	w.mu.Unlock()
	rw.WriteHeader(200)
}

func (w *webhookReceiver) deliveries() []delivery {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]delivery(nil), w.got...)
}

// register adds the receiver as a webhook and routes every priority to it
// (and to the devices given) through the ward's escalation policy.
func (w *webhookReceiver) register(c api, devices ...string) {
	c.t.Helper()
	hook := c.must(201, "POST", "/api/v1/webhooks", "application/json", []byte(`{"url":"`+w.srv.URL+`/alarms"}`))
	w.mu.Lock()
	w.secret = []byte(hook["secret"].(string))
	w.mu.Unlock()
	recips := []string{`"webhook:` + hook["id"].(string) + `"`}
	for _, d := range devices {
		recips = append(recips, `"device:`+d+`"`)
	}
	c.must(200, "PUT", "/api/v1/settings/ward/escalation?reason=test", "application/json", []byte(`{"policies":{"all":{"tiers":[{"after":"0s","recipients":[`+
		strings.Join(recips, ",")+`]}]}},"priorities":{"high":"all","medium":"all","low":"all"},"supervisors":"all"}`))
}

// sseEvents reads the live stream into a channel of "event data" lines.
func sseEvents(t *testing.T, base, query string) <-chan string {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/api/v1/stream"+query, nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("stream: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	out := make(chan string, 1000)
	go func() {
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		event := ""
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "event: "):
				event = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				select {
				case out <- event + " " + strings.TrimPrefix(line, "data: "):
				default:
				}
			}
		}
	}()
	return out
}

// TestAlarmEndToEnd: readings over MQTT raise an alarm that reaches the
// API, the live stream, a signed webhook and the patient's own device (MQTT
// downlink with PUBACK); acknowledging it is recorded and announced.
func TestAlarmEndToEnd(t *testing.T) {
	_, addrs := startNode(t, t.TempDir())
	c := api{t: t, base: "http://" + addrs.HTTP, token: testToken}
	e := enrol(c, "alarm")
	hook := newWebhookReceiver(t)
	hook.register(c, e.device)
	events := sseEvents(t, c.base, "?patient="+e.patient)

	cl, err := mqttConnect(t, addrs.MQTT, e.device, e.secret)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Disconnect(0)
	downlink := make(chan []byte, 10)
	if tok := cl.Subscribe("tend/v1/devices/"+e.device+"/cmd", 1, func(_ paho.Client, m paho.Message) { downlink <- m.Payload() }); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe to the command topic: %v", tok.Error())
	}

	// SpO2 84 then 83 thirty seconds later (reading time): spo2-critical.
	t0 := time.Now().Add(time.Second)
	pack := fmt.Sprintf(`[{"bn":"%s:","bt":%d,"n":"59408-5","u":"%%","v":84},{"n":"59408-5","u":"%%","v":83,"t":30}]`, e.device, t0.Unix())
	if tok := cl.Publish("tend/v1/devices/"+e.device+"/obs", 1, false, pack); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish: %v", tok.Error())
	}

	var id string
	deadline := time.Now().Add(20 * time.Second)
	for id == "" && time.Now().Before(deadline) {
		m := c.must(200, "GET", "/api/v1/alarms?patient="+e.patient+"&state=active", "", nil)
		for _, a := range m["alarms"].([]any) {
			if a := a.(map[string]any); a["rule"] == "spo2-critical" {
				id = a["id"].(string)
				for _, k := range []string{"patient", "state", "priority", "kind", "raised", "updated"} {
					if a[k] == nil || a[k] == "" {
						t.Errorf("alarm JSON lacks %q: %v", k, a)
					}
				}
				if a["priority"] != "high" || a["patient"] != e.patient {
					t.Errorf("alarm %v", a)
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	if id == "" {
		t.Fatal("no spo2-critical alarm was raised")
	}

	waitFor(t, "the live stream to announce it", func() bool {
		for {
			select {
			case ev := <-events:
				if strings.HasPrefix(ev, "alarm ") && strings.Contains(ev, `"action":"raised"`) && strings.Contains(ev, id) {
					return true
				}
			default:
				return false
			}
		}
	})
	waitFor(t, "the signed webhook delivery", func() bool {
		for _, d := range hook.deliveries() {
			if d.event == "alarm.raised" && d.alarm["id"] == id && d.key != "" {
				return true
			}
		}
		return false
	})
	select {
	case p := <-downlink:
		var doc struct {
			Event string         `json:"event"`
			Alarm map[string]any `json:"alarm"`
		}
		mustJSON(t, p, &doc)
		if doc.Alarm["patient"] != e.patient || !strings.HasPrefix(doc.Event, "alarm.") {
			t.Errorf("downlink payload %s", p)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the patient's device got nothing on its command topic")
	}

	ack := c.must(200, "POST", "/api/v1/alarms/"+id+"/ack", "application/json", []byte(`{"reason":"at the bedside"}`))
	if ack["state"] != "acknowledged" && ack["alarm"] == nil {
		t.Errorf("ack answer %v", ack)
	}
	m := c.must(200, "GET", "/api/v1/alarms?patient="+e.patient+"&state=acknowledged", "", nil)
	if n := len(m["alarms"].([]any)); n != 1 {
		t.Errorf("%d acknowledged alarms, want 1", n)
	}
	detail := c.must(200, "GET", "/api/v1/alarms/"+id, "", nil)
	hist, _ := json.Marshal(detail["history"])
	if !strings.Contains(string(hist), `"acknowledged"`) || !strings.Contains(string(hist), "at the bedside") {
		t.Errorf("history lacks the acknowledgement: %s", hist)
	}
	if code, _ := c.do("POST", "/api/v1/alarms/"+id+"/resolve", "", nil); code != 200 {
		t.Errorf("resolve: %d", code)
	}
	if code, _ := c.do("POST", "/api/v1/alarms/"+id+"/ack", "", nil); code != 409 {
		t.Errorf("ack of a resolved alarm: %d, want 409", code)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	waitForWithin(t, what, 20*time.Second, cond)
}

func waitForWithin(t *testing.T, what string, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestDispatchSurvivesKill kills `tend serve` with SIGKILL while alarms are
// being delivered to a slow webhook receiver. After restarts every alarm is
// delivered at least once, each under one stable idempotency key, and no
// reading raised its alarm twice.
func TestDispatchSurvivesKill(t *testing.T) {
	if testing.Short() {
		t.Skip("kills and restarts a server; skipped with -short")
	}
	dir := t.TempDir()
	hook := newWebhookReceiver(t)
	hook.delay = time.Second // 8 alarms, 4 at a time: about 2 s of dispatch per round
	const rounds, perRound = 3, 8
	var patients []enrolled
	for round := 0; round < rounds; round++ {
		cmd, addrs := serveChild(t, dir)
		c := api{t: t, base: "http://" + addrs.HTTP, token: testToken}
		if round == 0 {
			hook.register(c)
		}
		for i := 0; i < perRound; i++ {
			e := enrol(c, fmt.Sprintf("fall-%d-%d", round, i))
			patients = append(patients, e)
			req, _ := http.NewRequest("POST", c.base+"/api/v1/devices/"+e.device+"/obs", strings.NewReader(`[{"n":"fall","v":1}]`))
			req.Header.Set("Authorization", "Bearer "+e.secret)
			req.Header.Set("Content-Type", "application/senml+json")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 202 {
				t.Fatalf("fall reading: %d", resp.StatusCode)
			}
		}
		time.Sleep(400 * time.Millisecond) // some deliveries done, some in flight
		if err := cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		cmd.Wait()
	}

	cmd, addrs := serveChild(t, dir)
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	c := api{t: t, base: "http://" + addrs.HTTP, token: testToken}
	want := map[string]bool{}
	for _, e := range patients {
		var ids []string
		waitFor(t, "the fall alarm of "+e.patient, func() bool {
			m := c.must(200, "GET", "/api/v1/alarms?patient="+e.patient, "", nil)
			ids = ids[:0]
			for _, a := range m["alarms"].([]any) {
				if a := a.(map[string]any); a["rule"] == "fall" {
					ids = append(ids, a["id"].(string))
				}
			}
			return len(ids) > 0
		})
		if len(ids) != 1 {
			t.Errorf("patient %s has %d fall alarms, want 1 (a replay raised it again)", e.patient, len(ids))
		}
		want[ids[0]] = true
	}
	// Tend must learn of every delivery: one that was in flight when the
	// server died is sent again (same key) once the dead server's claim ends.
	waitForWithin(t, "every delivery confirmed", time.Minute, func() bool {
		for id := range want {
			m := c.must(200, "GET", "/api/v1/alarms/"+id, "", nil)
			ds, _ := m["deliveries"].([]any)
			if len(ds) == 0 {
				return false
			}
			for _, d := range ds {
				if d.(map[string]any)["state"] != "delivered" {
					return false
				}
			}
		}
		return true
	})
	keys := map[string]map[string]bool{} // alarm → idempotency keys of its raise
	waitFor(t, "every alarm received", func() bool {
		for k := range keys {
			delete(keys, k)
		}
		for _, d := range hook.deliveries() {
			if d.event != "alarm.raised" {
				continue
			}
			id, _ := d.alarm["id"].(string)
			if keys[id] == nil {
				keys[id] = map[string]bool{}
			}
			keys[id][d.key] = true
		}
		for id := range want {
			if keys[id] == nil {
				return false
			}
		}
		return true
	})
	redelivered := 0
	for id, ks := range keys {
		if !want[id] {
			t.Errorf("delivery for unknown alarm %s", id)
		}
		if len(ks) != 1 {
			t.Errorf("alarm %s was delivered under %d idempotency keys: %v", id, len(ks), ks)
		}
	}
	total := len(hook.deliveries())
	redelivered = total - len(keys)
	if redelivered == 0 {
		t.Error("no delivery was in flight when the server was killed; the test proves nothing about re-sending")
	}
	t.Logf("%d alarms, %d deliveries received (%d repeats of a key the receiver had seen: at least once, never lost)", len(want), total, redelivered)
}
