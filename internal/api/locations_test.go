package api

import (
	"context"
	"testing"
	"time"
)

func TestPatientLocations(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	t0 := time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)
	if err := f.st.MovePatient(ctx, "p1", "WEST/ICU/12/A", t0); err != nil {
		t.Fatal(err)
	}
	if err := f.st.MovePatient(ctx, "p1", "WEST/WARD3/4/B", t0.Add(26*time.Hour)); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, path, token string
		want              int
	}{
		{"admin", "/api/v1/patients/p1/locations", adminTok, 200},
		{"integration", "/api/v1/patients/p1/locations", integTok, 200},
		{"anonymous", "/api/v1/patients/p1/locations", "", 401},
		{"unknown patient", "/api/v1/patients/nope/locations", adminTok, 404},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := f.do(t, "GET", tc.path, tc.token, "", "")
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d, want %d (%v)", resp.StatusCode, tc.want, body)
			}
			if tc.want != 200 {
				return
			}
			locs, _ := body["locations"].([]any)
			if len(locs) != 2 {
				t.Fatalf("locations = %v, want two stays", body["locations"])
			}
			first, second := locs[0].(map[string]any), locs[1].(map[string]any)
			if first["location"] != "WEST/ICU/12/A" || first["from"] != "2026-03-01T08:00:00Z" || first["to"] != "2026-03-02T10:00:00Z" {
				t.Errorf("first stay = %v", first)
			}
			if second["location"] != "WEST/WARD3/4/B" || second["from"] != "2026-03-02T10:00:00Z" {
				t.Errorf("second stay = %v", second)
			}
			if _, open := second["to"]; open {
				t.Errorf("current stay has a to: %v", second)
			}
		})
	}
}
