package node_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tendhealth/tend/internal/alarm"
	"github.com/tendhealth/tend/internal/alarmdb/pgalarm"
	"github.com/tendhealth/tend/internal/lease"
	"github.com/tendhealth/tend/internal/node"
	"github.com/tendhealth/tend/internal/store/postgres"
	"github.com/tendhealth/tend/internal/store/postgres/pgtest"
	"github.com/tendhealth/tend/internal/stream"
)

// natsChild configures a NATS server run as a child process, so the test
// can kill it with SIGKILL.
type natsChild struct {
	Name        string
	Port        int
	ClusterPort int
	Routes      string
	StoreDir    string
}

// runNATSChild runs the server described by TEND_TEST_NATS until killed.
func runNATSChild() {
	var c natsChild
	if err := json.Unmarshal([]byte(os.Getenv("TEND_TEST_NATS")), &c); err != nil {
		fmt.Fprintln(os.Stderr, "TEND_TEST_NATS:", err)
		os.Exit(2)
	}
	ns, err := server.NewServer(&server.Options{ServerName: c.Name, Host: "127.0.0.1", Port: c.Port, JetStream: true,
		StoreDir: c.StoreDir, SyncAlways: true, NoSigs: true, NoLog: true,
		Cluster: server.ClusterOpts{Name: "tend-scaleout", Host: "127.0.0.1", Port: c.ClusterPort},
		Routes:  server.RoutesFromStr(c.Routes)})
	if err != nil {
		fmt.Fprintln(os.Stderr, "nats:", err)
		os.Exit(2)
	}
	ns.Start()
	ns.WaitForShutdown()
	os.Exit(0)
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startNATSCluster starts three clustered JetStream servers as child
// processes and waits until JetStream answers.
func startNATSCluster(t *testing.T) (cmds []*exec.Cmd, names []string, urls []string) {
	t.Helper()
	var cluster []int
	var routes []string
	for range 3 {
		p := freePort(t)
		cluster = append(cluster, p)
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", p))
	}
	for i := range 3 {
		c := natsChild{Name: fmt.Sprintf("nats-%d", i+1), Port: freePort(t), ClusterPort: cluster[i],
			Routes: strings.Join(routes, ","), StoreDir: t.TempDir()}
		b, _ := json.Marshal(c)
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), "TEND_TEST_CHILD=nats", "TEND_TEST_NATS="+string(b))
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		cmds, names = append(cmds, cmd), append(names, c.Name)
		urls = append(urls, fmt.Sprintf("nats://127.0.0.1:%d", c.Port))
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		nc, err := nats.Connect(strings.Join(urls, ","))
		if err == nil {
			js, _ := jetstream.New(nc)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_, err = js.AccountInfo(ctx)
			cancel()
			nc.Close()
			if err == nil {
				return cmds, names, urls
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("NATS cluster not ready: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestScaleOut runs three Tend nodes on a three-server NATS cluster and
// PostgreSQL while devices publish, kills with SIGKILL the Tend node
// writing the store and then the NATS server leading the readings stream,
// and checks that every acknowledged reading is stored once, every alarm
// episode the readings imply exists exactly once (no reading's alarm
// applied twice), and alarms flow again within 10 s of the Tend kill
// (15 s of the NATS one: see below).
func TestScaleOut(t *testing.T) {
	if testing.Short() {
		t.Skip("runs three NATS servers and three Tend nodes; skipped with -short")
	}
	pgURL := pgtest.Schema(t, postgres.Redact)
	natsCmds, natsNames, natsURLs := startNATSCluster(t)

	type tendNode struct {
		cmd   *exec.Cmd
		addrs node.Addrs
		dir   string
		dead  bool
	}
	var nodes []*tendNode
	for range 3 {
		dir := t.TempDir()
		cmd, addrs := serveChild(t, dir, "--nats-url", strings.Join(natsURLs, ","), "--store", pgURL)
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		nodes = append(nodes, &tendNode{cmd: cmd, addrs: addrs, dir: dir})
	}
	c := api{t: t, base: "http://" + nodes[0].addrs.HTTP, token: testToken}

	const patients = 9
	var enrolled []enrolled
	for i := range patients {
		enrolled = append(enrolled, enrol(c, fmt.Sprint("so", i)))
	}
	alarms, err := pgalarm.Open(context.Background(), pgURL)
	if err != nil {
		t.Fatal(err)
	}
	defer alarms.Close()

	// Each device sends battery 10 % then 50 %, one per 150 ms, each cycle
	// one low-battery episode (low priority: it resolves when it clears).
	// A publish is repeated, through another node if need be, until
	// acknowledged.
	var mu sync.Mutex
	alive := func() []string {
		mu.Lock()
		defer mu.Unlock()
		var out []string
		for _, n := range nodes {
			if !n.dead {
				out = append(out, n.addrs.MQTT)
			}
		}
		return out
	}
	var wg sync.WaitGroup
	errs := make(chan error, patients)
	stop := make(chan struct{})
	cycles := make([]int, patients) // completed raise-and-clear cycles per patient
	for i, e := range enrolled {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var cl paho.Client
			next := i
			for k := 0; ; k++ {
				if k%2 == 0 {
					select {
					case <-stop:
						if cl != nil {
							cl.Disconnect(100)
						}
						return
					default:
					}
					cycles[i]++ // a raise, and the clear after it
				}
				v := 10
				if k%2 == 1 {
					v = 50
				}
				at := time.Now().UnixMilli() // after the binding, and never twice
				payload := fmt.Sprintf(`[{"n":"battery","u":"%%","v":%d,"t":%d.%03d}]`, v, at/1000, at%1000)
				for attempt := 0; ; attempt++ {
					if attempt > 200 {
						errs <- fmt.Errorf("%s: reading %d never acknowledged", e.device, k)
						return
					}
					if cl == nil || !cl.IsConnectionOpen() {
						addrs := alive()
						var err error
						cl, err = mqttConnect(t, addrs[next%len(addrs)], e.device, e.secret)
						next++
						if err != nil {
							cl = nil
							time.Sleep(100 * time.Millisecond)
							continue
						}
					}
					tok := cl.Publish("tend/v1/devices/"+e.device+"/obs", 1, false, payload)
					if tok.WaitTimeout(10*time.Second) && tok.Error() == nil {
						break
					}
					cl.Disconnect(0)
					cl = nil
				}
				time.Sleep(150 * time.Millisecond)
			}
		}()
	}

	// Watch the alarm store: when did each patient last get a new episode?
	episodes := func() map[string]int {
		as, err := alarms.Alarms(context.Background(), alarm.Filter{Limit: 100000})
		if err != nil {
			t.Error(err)
			return nil
		}
		out := map[string]int{}
		for _, a := range as {
			if a.Rule == "battery-low" {
				out[a.Patient]++
			}
		}
		return out
	}

	time.Sleep(2 * time.Second)
	// Kill the store writer's node.
	nc, err := nats.Connect(strings.Join(natsURLs, ","))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	kv, err := js.KeyValue(context.Background(), lease.Bucket)
	if err != nil {
		t.Fatal(err)
	}
	var entry jetstream.KeyValueEntry
	waitForWithin(t, "the store writer's lease", 10*time.Second, func() bool {
		// Free for a moment while one node hands it to another.
		entry, err = kv.Get(context.Background(), "lease.store-writer")
		return err == nil
	})
	victim := -1
	for i, n := range nodes {
		id, _ := os.ReadFile(filepath.Join(n.dir, "node-id"))
		if strings.TrimSpace(string(id)) == string(entry.Value()) {
			victim = i
		}
	}
	if victim < 0 {
		t.Fatalf("store writer lease held by %q, none of the nodes", entry.Value())
	}
	// recovered waits until every patient has a new episode, and says how
	// long that took after the kill.
	recovered := func(what string, killed time.Time, before map[string]int, within time.Duration) {
		firstAfter := map[string]time.Duration{}
		for time.Since(killed) < 30*time.Second && len(firstAfter) < patients {
			now := episodes()
			for _, e := range enrolled {
				if _, seen := firstAfter[e.patient]; !seen && now[e.patient] > before[e.patient] {
					firstAfter[e.patient] = time.Since(killed)
				}
			}
			time.Sleep(100 * time.Millisecond)
		}
		var worst time.Duration
		var each []string
		for _, e := range enrolled {
			d, ok := firstAfter[e.patient]
			if !ok {
				t.Errorf("patient %s got no new alarm within 30 s of killing %s", e.patient, what)
			}
			worst = max(worst, d)
			each = append(each, d.Round(100*time.Millisecond).String())
		}
		t.Logf("alarms flowing again for every patient %v after killing %s (each: %s)", worst.Round(time.Millisecond), what, strings.Join(each, " "))
		if worst > within {
			t.Errorf("alarms resumed %v after killing %s, want within %v", worst, what, within)
		}
	}

	before := episodes()
	mu.Lock()
	nodes[victim].dead = true
	mu.Unlock()
	killed := time.Now()
	nodes[victim].cmd.Process.Signal(syscall.SIGKILL)
	recovered(fmt.Sprintf("Tend node %d (store writer)", victim), killed, before, 10*time.Second)

	// Then the NATS server leading the readings stream. Its Raft group
	// elects a new leader after an election timeout of 4 to 9 s (fixed in
	// nats-server), during which publishes wait: the bound is looser.
	info, err := func() (*jetstream.StreamInfo, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		st, err := js.Stream(ctx, stream.StreamName)
		if err != nil {
			return nil, err
		}
		return st.Info(ctx)
	}()
	if err != nil || info.Cluster == nil {
		t.Fatalf("stream info: %v", err)
	}
	before = episodes()
	killed = time.Now()
	for i, name := range natsNames {
		if name == info.Cluster.Leader {
			natsCmds[i].Process.Signal(syscall.SIGKILL)
			recovered("NATS server "+name+" (stream leader)", killed, before, 15*time.Second)
		}
	}
	close(stop)

	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	// Every acknowledged reading stored once, every episode once.
	var survivor *tendNode
	for _, n := range nodes {
		if !n.dead {
			survivor = n
		}
	}
	sc := api{t: t, base: "http://" + survivor.addrs.HTTP, token: testToken}
	for i, e := range enrolled {
		if got := waitObsFor(sc, e.patient, 2*cycles[i], 60*time.Second); got != 2*cycles[i] {
			t.Errorf("patient %s: %d readings stored, want %d (each acknowledged once)", e.patient, got, 2*cycles[i])
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := episodes()
		done := true
		for i, e := range enrolled {
			done = done && got[e.patient] >= cycles[i]
		}
		if done || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	as, err := alarms.Alarms(context.Background(), alarm.Filter{Limit: 100000})
	if err != nil {
		t.Fatal(err)
	}
	per := map[string]int{}
	for _, a := range as {
		if a.Rule != "battery-low" {
			continue
		}
		per[a.Patient]++
		hist, err := alarms.History(context.Background(), a.ID)
		if err != nil {
			t.Fatal(err)
		}
		raised := 0
		for _, ch := range hist {
			if ch.Action == "raised" {
				raised++
			}
		}
		if raised != 1 {
			t.Errorf("episode %s of %s raised %d times", a.ID, a.Patient, raised)
		}
	}
	for i, e := range enrolled {
		if per[e.patient] != cycles[i] {
			t.Errorf("patient %s: %d low-battery episodes, want %d (one per cycle)", e.patient, per[e.patient], cycles[i])
		}
	}
}
