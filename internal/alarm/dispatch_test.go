package alarm_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tendhealth/tend/internal/alarm"
	"github.com/tendhealth/tend/internal/alarmdb"
	"github.com/tendhealth/tend/internal/notify"
	"github.com/tendhealth/tend/internal/rules"
)

// A webhook that hangs and one that fails must not hold up deliveries to a
// working one: each send has its own goroutine and timeout, and at most a
// few are in flight per recipient.
func TestDispatcherIsolatesBadEndpoints(t *testing.T) {
	hang := make(chan struct{})
	hanging := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-hang:
		case <-r.Context().Done():
		}
	}))
	defer hanging.Close()
	defer close(hang)
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(500) }))
	defer failing.Close()
	var good atomic.Int64
	working := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { good.Add(1) }))
	defer working.Close()

	db, err := alarmdb.Open(filepath.Join(t.TempDir(), "alarms.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	urls := map[string]string{"hang": hanging.URL, "fail": failing.URL, "ok": working.URL}
	for id, u := range urls {
		if err := db.PutWebhook(ctx, alarm.Webhook{ID: id, URL: u, Secret: []byte("s3cret-" + id), Created: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	esc := `{"policies":{"p":{"tiers":[{"after":"0s","recipients":["webhook:hang","webhook:fail","webhook:ok"]}]}},"priorities":{"high":"p"}}`
	if err := db.PutDoc(ctx, &alarm.Doc{Scope: alarm.SettingScope("ward"), Kind: alarm.DocEscalation, Body: []byte(esc), Author: "t", At: time.Now()}); err != nil {
		t.Fatal(err)
	}
	profiles := &alarm.Profiles{Store: db}
	svc := alarm.NewService(alarm.Config{Store: db, Escalation: profiles.Escalation})
	d := &alarm.Dispatcher{Store: db, Service: svc, Sender: notify.Mux{"webhook": &notify.Webhook{Timeout: 30 * time.Second}},
		Resolve: func(ctx context.Context, r string) (notify.Recipient, error) {
			id := strings.TrimPrefix(r, "webhook:")
			w, err := db.Webhook(ctx, id)
			if err != nil {
				return notify.Recipient{}, err
			}
			return notify.Recipient{Kind: "webhook", Address: w.URL, Secret: w.Secret}, nil
		}}
	if err := d.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer d.Close()

	const alarms = 20
	for i := 0; i < alarms; i++ {
		ev := rules.Event{Type: rules.Start, Patient: "p" + string(rune('a'+i)), Rule: "fall", Name: "Fall", Kind: rules.KindEvent,
			Category: rules.CategoryEvent, Priority: rules.PriorityHigh, Latching: true, Time: time.Now(), Message: "fall"}
		if err := svc.Apply(ctx, alarm.Checkpoint{}, []rules.Event{ev}); err != nil {
			t.Fatal(err)
		}
		d.Kick()
	}
	// The working endpoint gets all of its deliveries while the hanging one
	// still holds its first few (its 30 s timeout has not run out).
	deadline := time.Now().Add(10 * time.Second)
	for good.Load() < alarms {
		if time.Now().After(deadline) {
			t.Fatalf("the working webhook got %d of %d deliveries while another endpoint hangs", good.Load(), alarms)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The failing endpoint's deliveries wait for their retry, with the
	// error recorded, meanwhile.
	for {
		as, err := db.Alarms(ctx, alarm.Filter{Limit: 100})
		if err != nil {
			t.Fatal(err)
		}
		tried := 0
		var last alarm.Delivery
		for _, a := range as {
			ds, err := db.Deliveries(ctx, a.ID)
			if err != nil {
				t.Fatal(err)
			}
			for _, del := range ds {
				if del.Recipient == "webhook:fail" && del.Attempts > 0 {
					tried++
					last = del
				}
			}
		}
		if tried == alarms {
			if last.State != alarm.Pending || !strings.Contains(last.LastError, "500") {
				b, _ := json.Marshal(last)
				t.Errorf("a failing endpoint's delivery should wait for a retry with its error: %s", b)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d deliveries to the failing endpoint were tried", tried, alarms)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
