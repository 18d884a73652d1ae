// Package natstest starts NATS JetStream servers inside a test process, on
// loopback ports the kernel picks: one server, or a cluster with routes.
package natstest

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Cluster is a JetStream cluster of in-process servers on loopback
// ports chosen by the kernel.
type Cluster struct {
	Servers []*server.Server
}

// StartCluster starts n clustered JetStream servers that fsync every write,
// and waits until their meta leader sees all of them.
func StartCluster(t *testing.T, n int) *Cluster {
	t.Helper()
	// JetStream clustering needs every server's routes configured up
	// front, so the route ports are picked by the kernel first.
	routePorts := make([]int, n)
	var routes []string
	for i := range routePorts {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		routePorts[i] = l.Addr().(*net.TCPAddr).Port
		l.Close()
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", routePorts[i]))
	}
	storeDirs := make([]string, n)
	for i := range storeDirs {
		storeDirs[i] = t.TempDir() // before the shutdown cleanup, so removed after it
	}
	c := &Cluster{}
	t.Cleanup(c.Shutdown)
	for i := range n {
		opts := &server.Options{
			ServerName: fmt.Sprintf("tend-test-%d", i+1),
			Host:       "127.0.0.1",
			Port:       -1,
			JetStream:  true,
			StoreDir:   storeDirs[i],
			SyncAlways: true,
			NoSigs:     true,
			NoLog:      true,
			Cluster:    server.ClusterOpts{Name: "tend-test", Host: "127.0.0.1", Port: routePorts[i]},
			Routes:     server.RoutesFromStr(strings.Join(routes, ",")),
		}
		ns, err := server.NewServer(opts)
		if err != nil {
			t.Fatalf("configure server %d: %v", i+1, err)
		}
		go ns.Start()
		c.Servers = append(c.Servers, ns)
	}
	for i, ns := range c.Servers {
		if !ns.ReadyForConnections(10 * time.Second) {
			t.Fatalf("server %d not ready", i+1)
		}
	}
	c.WaitForMetaLeader(t, n)
	return c
}

func (c *Cluster) WaitForMetaLeader(t *testing.T, peers int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		for _, s := range c.Servers {
			if s.Running() && s.JetStreamIsLeader() && len(s.JetStreamClusterPeers()) >= peers {
				return
			}
		}
		time.Sleep(50 * time.Millisecond) // polling a real cluster: no clock to inject
	}
	t.Fatalf("no JetStream meta leader with %d peers after 20 s", peers)
}

func (c *Cluster) URLs() []string {
	var urls []string
	for _, s := range c.Servers {
		urls = append(urls, s.ClientURL())
	}
	return urls
}

// StreamLeader is the server leading the stream, or nil.
func (c *Cluster) StreamLeader(stream string) *server.Server {
	for _, s := range c.Servers {
		if s.Running() && s.JetStreamIsStreamLeader(server.DEFAULT_GLOBAL_ACCOUNT, stream) {
			return s
		}
	}
	return nil
}

// Shutdown stops every server (also run at the test's cleanup).
func (c *Cluster) Shutdown() {
	for _, s := range c.Servers {
		s.Shutdown()
		s.WaitForShutdown()
	}
}

// StartServer starts one JetStream server that fsyncs every write.
func StartServer(t *testing.T) *server.Server {
	t.Helper()
	ns, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(),
		SyncAlways: true, NoSigs: true, NoLog: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("NATS server not ready")
	}
	return ns
}
