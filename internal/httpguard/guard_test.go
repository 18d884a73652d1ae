package httpguard

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newClock() *clock { return &clock{t: time.Unix(1_800_000_000, 0)} }

var okHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })

func do(h http.Handler, method, path, remote string, hdr ...string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, path, nil)
	r.RemoteAddr = remote
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Add(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func TestHeaders(t *testing.T) {
	proxy := netip.MustParsePrefix("10.0.0.0/8")
	dashboard := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/" {
			w.Header().Set("Content-Security-Policy", "default-src 'self'")
		}
	})
	g := New(Config{TrustedProxies: []netip.Prefix{proxy}}, dashboard)
	tests := []struct {
		name     string
		path     string
		remote   string
		tls      bool
		hdr      []string
		wantCSP  string
		wantHSTS bool
	}{
		{"API over plain HTTP", "/fhir/Patient", "192.0.2.1:5000", false, nil, apiCSP, false},
		{"API over TLS", "/fhir/Patient", "192.0.2.1:5000", true, nil, apiCSP, true},
		{"dashboard keeps its own CSP", "/", "192.0.2.1:5000", true, nil, "default-src 'self'", true},
		{"trusted proxy says https", "/api/v1/alarms", "10.1.2.3:5000", false, []string{"X-Forwarded-Proto", "https"}, apiCSP, true},
		{"untrusted client says https", "/api/v1/alarms", "192.0.2.1:5000", false, []string{"X-Forwarded-Proto", "https"}, apiCSP, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", tt.path, nil)
			r.RemoteAddr = tt.remote
			if tt.tls {
				r.TLS = &tls.ConnectionState{}
			}
			for i := 0; i+1 < len(tt.hdr); i += 2 {
				r.Header.Set(tt.hdr[i], tt.hdr[i+1])
			}
			w := httptest.NewRecorder()
			g.ServeHTTP(w, r)
			h := w.Result().Header
			if got := h.Get("Content-Security-Policy"); got != tt.wantCSP {
				t.Errorf("CSP %q, want %q", got, tt.wantCSP)
			}
			if got := h.Get("Strict-Transport-Security"); (got != "") != tt.wantHSTS {
				t.Errorf("HSTS %q, want present=%v", got, tt.wantHSTS)
			}
			for k, v := range map[string]string{"X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY",
				"Referrer-Policy": "no-referrer", "Cross-Origin-Opener-Policy": "same-origin"} {
				if h.Get(k) != v {
					t.Errorf("%s = %q, want %q", k, h.Get(k), v)
				}
			}
		})
	}
}

func TestRateLimit(t *testing.T) {
	c := newClock()
	g := New(Config{API: Limit{Rate: 1, Burst: 3}, Ingest: Limit{Rate: 100, Burst: 100}, Now: c.now}, okHandler)
	for i := range 3 {
		if w := do(g, "GET", "/api/v1/alarms", "192.0.2.1:1"); w.Code != 200 {
			t.Fatalf("request %d: %d", i, w.Code)
		}
	}
	w := do(g, "GET", "/api/v1/alarms", "192.0.2.1:2")
	if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") != "1" {
		t.Fatalf("over budget: %d Retry-After %q", w.Code, w.Header().Get("Retry-After"))
	}
	var p map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &p); err != nil || p["status"] != float64(429) || p["detail"] == "" {
		t.Fatalf("problem body %s (%v)", w.Body, err)
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("Content-Type %q", ct)
	}
	// Another client, device ingest and health checks are not affected.
	for _, tt := range []struct{ method, path, remote string }{
		{"GET", "/api/v1/alarms", "192.0.2.2:1"},
		{"POST", "/api/v1/devices/d1/obs", "192.0.2.1:1"},
		{"GET", "/healthz", "192.0.2.1:1"},
		{"GET", "/readyz", "192.0.2.1:1"},
	} {
		if w := do(g, tt.method, tt.path, tt.remote); w.Code != 200 {
			t.Errorf("%s %s from %s: %d", tt.method, tt.path, tt.remote, w.Code)
		}
	}
	// Loopback clients are not limited unless asked.
	for range 5 {
		if w := do(g, "GET", "/api/v1/alarms", "127.0.0.1:1"); w.Code != 200 {
			t.Fatalf("loopback client limited: %d", w.Code)
		}
	}
	gl := New(Config{API: Limit{Rate: 1, Burst: 1}, LimitLoopback: true, Now: c.now}, okHandler)
	do(gl, "GET", "/x", "[::1]:1")
	if w := do(gl, "GET", "/x", "[::1]:1"); w.Code != 429 {
		t.Fatalf("LimitLoopback: second request %d", w.Code)
	}
	// Same IPv6 /64 is one client; another /64 is not.
	g6 := New(Config{API: Limit{Rate: 1, Burst: 1}, Now: c.now}, okHandler)
	if do(g6, "GET", "/x", "[2001:db8:1:2::1]:1").Code != 200 {
		t.Fatal("first v6 request refused")
	}
	if do(g6, "GET", "/x", "[2001:db8:1:2::99]:1").Code != 429 {
		t.Fatal("same /64 got a fresh budget")
	}
	if do(g6, "GET", "/x", "[2001:db8:1:3::1]:1").Code != 200 {
		t.Fatal("another /64 refused")
	}
	// Tokens come back with time.
	c.add(time.Second)
	if w := do(g, "GET", "/api/v1/alarms", "192.0.2.1:3"); w.Code != 200 {
		t.Fatalf("after a second: %d", w.Code)
	}
	if w := do(g, "GET", "/api/v1/alarms", "192.0.2.1:3"); w.Code != 429 {
		t.Fatalf("second request after a second: %d", w.Code)
	}
}

func TestConcurrencyLimit(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{}, 10)
	block := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-release
	})
	g := New(Config{API: Limit{Concurrency: 2}, Streams: 1}, block)
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() { defer wg.Done(); do(g, "GET", "/fhir/Patient", "192.0.2.1:1") }()
	}
	<-entered
	<-entered
	w := do(g, "GET", "/fhir/Patient", "192.0.2.1:1")
	if w.Code != 429 || w.Header().Get("Retry-After") == "" {
		t.Fatalf("third concurrent request: %d", w.Code)
	}
	// A stream does not need an API slot, but the stream cap holds.
	wg.Add(1)
	go func() { defer wg.Done(); do(g, "GET", "/api/v1/stream", "192.0.2.1:1") }()
	<-entered
	if w := do(g, "GET", "/events/ward", "192.0.2.1:1"); w.Code != 429 {
		t.Fatalf("second stream: %d", w.Code)
	}
	close(release)
	wg.Wait()
	if w := do(g, "GET", "/fhir/Patient", "192.0.2.1:1"); w.Code != 200 {
		t.Fatalf("after release: %d", w.Code)
	}
}

func TestClientAddr(t *testing.T) {
	proxies, err := ParseProxies("10.0.0.0/8, 192.0.2.7")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, remote string
		xff          []string
		proxies      []netip.Prefix
		want         string
	}{
		{"no proxies configured: XFF ignored", "192.0.2.1:5", []string{"203.0.113.9"}, nil, "192.0.2.1"},
		{"untrusted peer: XFF ignored", "192.0.2.1:5", []string{"203.0.113.9"}, proxies, "192.0.2.1"},
		{"trusted proxy", "10.0.0.1:5", []string{"203.0.113.9"}, proxies, "203.0.113.9"},
		{"client-written entries left of the real one", "10.0.0.1:5", []string{"1.1.1.1, 203.0.113.9"}, proxies, "203.0.113.9"},
		{"chain of trusted proxies", "10.0.0.1:5", []string{"203.0.113.9, 192.0.2.7", "10.2.2.2"}, proxies, "203.0.113.9"},
		{"garbage stops at the last good hop", "10.0.0.1:5", []string{"203.0.113.9, nonsense"}, proxies, "10.0.0.1"},
		{"trusted proxy without XFF", "10.0.0.1:5", nil, proxies, "10.0.0.1"},
		{"IPv4-mapped peer", "[::ffff:192.0.2.1]:5", nil, nil, "192.0.2.1"},
		{"unparseable peer", "pipe", nil, nil, "invalid IP"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			r.RemoteAddr = tt.remote
			for _, v := range tt.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			got, _ := ClientAddr(r, tt.proxies)
			if got.String() != tt.want {
				t.Fatalf("got %s, want %s", got, tt.want)
			}
		})
	}
	if _, err := ParseProxies("10.0.0.0/33"); err == nil {
		t.Fatal("bad prefix accepted")
	}
}

func TestClientTableBounded(t *testing.T) {
	c := newClock()
	g := New(Config{API: Limit{Rate: 1, Burst: 1}, MaxClients: 10, Now: c.now}, okHandler)
	refused := 0
	for i := range 100 {
		if do(g, "GET", "/x", fmt.Sprintf("198.51.100.%d:1", i)).Code == 429 {
			refused++
		}
	}
	if n := g.api.size(); n > 10 {
		t.Fatalf("tracking %d clients, limit 10", n)
	}
	// The 90 that did not fit share one bucket of burst 1.
	if refused != 89 {
		t.Fatalf("refused %d, want 89", refused)
	}
	c.add(2 * time.Minute) // every bucket refilled: idle clients are forgotten
	if do(g, "GET", "/x", "198.51.100.200:1").Code != 200 {
		t.Fatal("new client refused after the table emptied")
	}
	if n := g.api.size(); n != 1 {
		t.Fatalf("tracking %d clients after sweep, want 1", n)
	}
}

func TestMaxBody(t *testing.T) {
	var readErr error
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, readErr = io.ReadAll(r.Body)
	})
	g := New(Config{MaxBody: 10}, h)
	r := httptest.NewRequest("POST", "/fhir", strings.NewReader(strings.Repeat("x", 11)))
	w := httptest.NewRecorder()
	g.ServeHTTP(w, r)
	if w.Code != http.StatusRequestEntityTooLarge {
		t.Fatalf("declared oversize body: %d", w.Code)
	}
	r = httptest.NewRequest("POST", "/fhir", io.NopCloser(strings.NewReader(strings.Repeat("x", 11))))
	r.ContentLength = -1 // chunked: only reading finds out
	g.ServeHTTP(httptest.NewRecorder(), r)
	var mbe *http.MaxBytesError
	if !errors.As(readErr, &mbe) {
		t.Fatalf("chunked oversize body read: %v", readErr)
	}
}

// serve runs g on a real server with the guard's connection settings.
func serve(t *testing.T, g *Guard) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: g}
	g.ConfigureServer(srv)
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// trickle writes one byte at a time until the server closes the
// connection and returns how long that took, or fails after limit.
func trickle(t *testing.T, addr, head string, limit time.Duration) time.Duration {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	closed := make(chan struct{})
	go func() {
		io.Copy(io.Discard, c) // returns when the server closes
		close(closed)
	}()
	if head != "" {
		io.WriteString(c, head)
	}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-closed:
			return time.Since(start)
		case <-tick.C:
			if time.Since(start) > limit {
				t.Fatalf("connection still open after %v", limit)
			}
			c.Write([]byte("x"))
		}
	}
}

func TestSlowClientsAreCut(t *testing.T) {
	read := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.Copy(io.Discard, r.Body) })
	g := New(Config{ReadHeaderTimeout: 200 * time.Millisecond, BodyTimeout: 300 * time.Millisecond, IdleTimeout: 200 * time.Millisecond}, read)
	addr := serve(t, g)
	t.Run("header trickle", func(t *testing.T) {
		d := trickle(t, addr, "GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ", 3*time.Second)
		if d < 150*time.Millisecond {
			t.Fatalf("closed after %v, before the timeout", d)
		}
	})
	t.Run("body trickle", func(t *testing.T) {
		d := trickle(t, addr, "POST /fhir HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n", 3*time.Second)
		if d < 250*time.Millisecond {
			t.Fatalf("closed after %v, before the timeout", d)
		}
	})
	t.Run("idle keep-alive", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		if _, err := br.ReadByte(); !errors.Is(err, io.EOF) {
			t.Fatalf("idle connection: %v, want EOF from the server", err)
		}
	})
}

// A server-sent-event stream outlives every per-request timeout, and a
// request body that arrived in time does not end a handler that takes
// longer than the body timeout (but within the write timeout).
func TestStreamsAndSlowHandlersSurviveTimeouts(t *testing.T) {
	const timeout = 150 * time.Millisecond
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/stream", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for i := range 8 {
			fmt.Fprintf(w, "data: %d\n\n", i)
			w.(http.Flusher).Flush()
			select {
			case <-time.After(timeout):
			case <-r.Context().Done():
				return
			}
		}
	})
	mux.HandleFunc("POST /slow", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		select {
		case <-time.After(3 * timeout):
		case <-r.Context().Done():
			http.Error(w, "cancelled", 500)
			return
		}
		w.Write(b)
	})
	g := New(Config{BodyTimeout: timeout, WriteTimeout: 5 * timeout, ReadHeaderTimeout: timeout}, mux)
	addr := serve(t, g)
	resp, err := http.Get("http://" + addr + "/api/v1/stream")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || strings.Count(string(body), "data:") != 8 {
		t.Fatalf("stream got %q (%v), want 8 events", body, err)
	}
	resp, err = http.Post("http://"+addr+"/slow", "text/plain", strings.NewReader("hello"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "hello" {
		t.Fatalf("slow handler: %d %q", resp.StatusCode, body)
	}
}

func FuzzForwardedFor(f *testing.F) {
	for _, s := range []string{"203.0.113.9", "1.1.1.1, 10.0.0.2", "::1, fe80::1%eth0", "", ",,,", "999.1.1.1", "[::1]:80"} {
		f.Add(s)
	}
	proxies, _ := ParseProxies("10.0.0.0/8,::1")
	peer := netip.MustParseAddr("10.0.0.1")
	f.Fuzz(func(t *testing.T, xff string) {
		got := forwardedFor(peer, []string{xff}, proxies)
		if !got.IsValid() {
			t.Fatalf("invalid address from %q", xff)
		}
		if got.Zone() != "" {
			t.Fatalf("zone kept from %q: %s", xff, got)
		}
		// The answer is the peer or one of the header's entries.
		if got == peer {
			return
		}
		for _, e := range strings.Split(xff, ",") {
			if a, err := netip.ParseAddr(strings.TrimSpace(e)); err == nil && a.Unmap().WithZone("") == got {
				return
			}
		}
		t.Fatalf("%s is not in %q", got, xff)
	})
}
