package bench

import (
	"net/http"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestErrorDetail(t *testing.T) {
	tests := []struct {
		name, body, want string
	}{
		{"problem detail", `{"title":"Bad Request","detail":"identifier is required"}`, "identifier is required"},
		{"problem title only", `{"title":"Conflict"}`, "Conflict"},
		{"error field", `{"error":"token expired"}`, "token expired"},
		{"operation outcome diagnostics", `{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"invalid","diagnostics":"Patient.name: bad"}]}`, "Patient.name: bad"},
		{"operation outcome details text", `{"resourceType":"OperationOutcome","issue":[{"details":{"text":"not allowed"}}]}`, "not allowed"},
		{"plain text first line", "forbidden\nstack trace here", "forbidden"},
		{"empty", "", ""},
		{"long text is cut", strings.Repeat("x", 500), strings.Repeat("x", 200) + "…"},
		{"invalid UTF-8 replaced", "bad \xff byte", "bad ? byte"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := errorDetail([]byte(tt.body)); got != tt.want {
				t.Errorf("errorDetail = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestStatusErrorText(t *testing.T) {
	tests := []struct {
		status int
		want   string
	}{
		{http.StatusUnauthorized, "create patient: 401 Unauthorized: check --token (an admin API token is needed): why"},
		{http.StatusForbidden, "create patient: 403 Forbidden: check --token (an admin API token is needed): why"},
		{http.StatusNotFound, "create patient: 404 Not Found: is the URL a Tend server?: why"},
		{http.StatusInternalServerError, "create patient: 500 Internal Server Error: why"},
	}
	for _, tt := range tests {
		e := &statusError{What: "create patient", Status: tt.status, Detail: "why"}
		if e.Error() != tt.want {
			t.Errorf("got %q, want %q", e.Error(), tt.want)
		}
	}
}

// FuzzErrorDetail: whatever a server answers, the message shown is short,
// valid UTF-8, one line, and producing it does not panic.
func FuzzErrorDetail(f *testing.F) {
	f.Add([]byte(`{"detail":"x"}`))
	f.Add([]byte(`{"issue":[{"diagnostics":"d"}]}`))
	f.Add([]byte(`{"issue":[]}`))
	f.Add([]byte("a\nb"))
	f.Add([]byte("\xff\xfe"))
	f.Fuzz(func(t *testing.T, body []byte) {
		got := errorDetail(body)
		if !utf8.ValidString(got) {
			t.Fatalf("invalid UTF-8: %q", got)
		}
		if len(got) > 200+len("…") {
			t.Fatalf("too long: %d bytes", len(got))
		}
	})
}
