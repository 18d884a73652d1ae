package web_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tendhealth/tend/internal/store"
	"github.com/tendhealth/tend/internal/web"
)

// BenchmarkLiveLatency200 measures how long a reading takes to reach an
// open overview page while 200 patients stream at 1 Hz each: from the
// device's HTTP POST (durable commit, store, live hub) to the rendered
// tile arriving on the page's event stream. It runs for a fixed time
// whatever b.N is (use -benchtime=1x). Target: p99 <= 1 s.
func BenchmarkLiveLatency200(b *testing.B) {
	const patients, rate = 200, time.Second
	run := 20 * time.Second
	tend := startTend(b)
	tend.addUser(b, nurseName, nursePass, store.RoleAdmin)
	type dev struct{ patient, id, secret string }
	devs := make([]dev, patients)
	var wg sync.WaitGroup
	for i := range devs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p, d, s := tend.patientWithDevice(fmt.Sprintf("Patient %03d", i))
			devs[i] = dev{p, d, s}
		}()
		if i%8 == 7 {
			wg.Wait()
		}
	}
	wg.Wait()
	client := signIn(b, tend.base)

	// sent[patient][value] is when a heart rate was posted.
	var mu sync.Mutex
	sent := map[string]map[int]time.Time{}
	byEvent := map[string]string{}
	for _, d := range devs {
		sent[d.patient] = map[int]time.Time{}
		byEvent[web.EventName(d.patient)] = d.patient
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", tend.base+"/events/ward", nil)
	resp, err := client.Do(req)
	if err != nil || resp.StatusCode != 200 {
		b.Fatalf("ward stream: %v %v", err, resp)
	}
	hr := regexp.MustCompile(`<dt>HR</dt>\s*<dd><span class="value">(\d+)<`)
	var lat []time.Duration
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		var name string
		var data strings.Builder
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "event: "):
				name = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				data.WriteString(line[6:])
				data.WriteByte('\n')
			case line == "":
				now := time.Now()
				if p, ok := byEvent[name]; ok {
					if m := hr.FindStringSubmatch(data.String()); m != nil {
						v, _ := strconv.Atoi(m[1])
						mu.Lock()
						if at, ok := sent[p][v]; ok {
							lat = append(lat, now.Sub(at))
							delete(sent[p], v)
						}
						mu.Unlock()
					}
				}
				name = ""
				data.Reset()
			}
		}
	}()

	b.ResetTimer()
	stop := time.Now().Add(run)
	var errs sync.Map
	var posts []time.Duration // device POST round trips (durable acknowledgement)
	for i, d := range devs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(time.Duration(i) * rate / patients) // spread the devices over the second
			t := time.NewTicker(rate)
			defer t.Stop()
			for seq := 0; time.Now().Before(stop); seq++ {
				v := 40 + seq%150 // distinct within the run's 20 readings
				start := time.Now()
				mu.Lock()
				sent[d.patient][v] = start
				mu.Unlock()
				body := fmt.Sprintf(`[{"n":"8867-4","u":"/min","v":%d}]`, v)
				r, _ := http.NewRequest("POST", tend.base+"/api/v1/devices/"+d.id+"/obs", strings.NewReader(body))
				r.Header.Set("Authorization", "Bearer "+d.secret)
				r.Header.Set("Content-Type", "application/senml+json")
				if resp, err := http.DefaultClient.Do(r); err != nil {
					errs.Store(err.Error(), true)
				} else {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					mu.Lock()
					posts = append(posts, time.Since(start))
					mu.Unlock()
					if resp.StatusCode != 202 {
						errs.Store(resp.Status, true)
					}
				}
				<-t.C
			}
		}()
	}
	wg.Wait()
	time.Sleep(2 * time.Second) // the last readings' updates
	b.StopTimer()
	cancel()
	<-done
	errs.Range(func(k, _ any) bool { b.Errorf("posting readings: %v", k); return true })
	mu.Lock()
	defer mu.Unlock()
	missing := 0
	for _, m := range sent {
		missing += len(m)
	}
	if len(lat) == 0 {
		b.Fatal("no reading reached the page")
	}
	slices.Sort(lat)
	pct := func(p float64) float64 { return float64(lat[int(float64(len(lat)-1)*p)]) / float64(time.Millisecond) }
	b.ReportMetric(float64(len(lat)), "readings")
	b.ReportMetric(float64(missing), "not-seen")
	b.ReportMetric(pct(0.5), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(float64(lat[len(lat)-1])/float64(time.Millisecond), "max-ms")
	slices.Sort(posts)
	b.ReportMetric(float64(posts[int(float64(len(posts)-1)*0.99)])/float64(time.Millisecond), "post-p99-ms")
}

// signIn signs in through the form, as a browser does, and returns a
// client holding the session cookie.
func signIn(t testing.TB, base string) *http.Client {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar}
	resp, err := c.Get(base + "/signin")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindSubmatch(page)
	if m == nil {
		t.Fatal("no CSRF token on the sign-in form")
	}
	resp, err = c.PostForm(base+"/signin", url.Values{"csrf": {string(m[1])}, "username": {nurseName}, "password": {nursePass}})
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("sign in: %v %v", err, resp.Status)
	}
	resp.Body.Close()
	return c
}
