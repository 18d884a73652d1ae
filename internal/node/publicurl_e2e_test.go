package node_test

import (
	"encoding/json"
	"net/http"
	"testing"
)

// `tend serve --public-url` reaches the SMART discovery document: behind a
// proxy, clients are told the proxy's token endpoint, not the node's.
func TestServePublicURL(t *testing.T) {
	cmd, a := serveChild(t, t.TempDir(), "--public-url", "https://tend.example.org/")
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	resp, err := http.Get("http://" + a.HTTP + "/.well-known/smart-configuration")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var doc struct {
		TokenEndpoint string `json:"token_endpoint"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	if doc.TokenEndpoint != "https://tend.example.org/auth/token" {
		t.Errorf("token_endpoint %q, want it under the public URL", doc.TokenEndpoint)
	}
}
