package audit_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"testing"
	"time"

	"github.com/tendhealth/tend/internal/audit"
	"github.com/tendhealth/tend/internal/auth"
	"github.com/tendhealth/tend/internal/store"
)

type grants struct {
	active []store.BreakGlass
	team   []string
	err    error
	calls  int
}

func (g *grants) ActiveBreakGlass(_ context.Context, user string, at time.Time) ([]store.BreakGlass, error) {
	g.calls++
	var out []store.BreakGlass
	for _, b := range g.active {
		if b.User == user && !at.Before(b.Start) && at.Before(b.Expires) {
			out = append(out, b)
		}
	}
	return out, g.err
}

func (g *grants) TeamPatients(context.Context, string) ([]string, error) {
	g.calls++
	return g.team, g.err
}

func TestBreakGlassPurpose(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	g := &grants{active: []store.BreakGlass{{User: "nurse1", Org: "east", Patient: "p2", Start: now.Add(-time.Minute), Expires: now.Add(time.Hour)},
		{User: "nurse1", Org: "east", Patient: "p1", Start: now.Add(-time.Minute), Expires: now.Add(time.Hour)}}, team: []string{"p1"}}
	purpose := audit.BreakGlassPurpose(g, func() time.Time { return now })
	nurse := auth.Principal{Subject: "nurse1", Role: string(store.RoleNurse), Org: "east"}
	for _, tc := range []struct {
		name     string
		agent    auth.Principal
		patients []string
		want     string
	}{
		{"a patient opened by the grant", nurse, []string{"p2"}, audit.PurposeBreakGlass},
		{"among others", nurse, []string{"p1", "p2"}, audit.PurposeBreakGlass},
		{"a patient of the own team, though also granted", nurse, []string{"p1"}, ""},
		{"a patient without a grant", nurse, []string{"p3"}, ""},
		{"no patient", nurse, nil, ""},
		{"a grant of another organisation", auth.Principal{Subject: "nurse1", Role: "nurse", Org: "west"}, []string{"p2"}, ""},
		{"another user", auth.Principal{Subject: "nurse2", Role: "nurse", Org: "east"}, []string{"p2"}, ""},
		{"an admin sees everyone without a grant", auth.Principal{Subject: "nurse1", Role: "admin", Org: "east"}, []string{"p2"}, ""},
	} {
		got, err := purpose(context.Background(), tc.agent, tc.patients)
		if err != nil || got != tc.want {
			t.Errorf("%s: %q %v, want %q", tc.name, got, err, tc.want)
		}
	}
	now = now.Add(2 * time.Hour) // expired
	if got, _ := purpose(context.Background(), nurse, []string{"p2"}); got != "" {
		t.Errorf("after expiry: %q", got)
	}
	g.err = errors.New("store down")
	if _, err := purpose(context.Background(), nurse, []string{"p2"}); err == nil {
		t.Error("a failed lookup was not reported (the answer must be withheld)")
	}
}

// A purpose is part of what the hash covers; a record without one hashes
// as records did before purposes existed, so old chains still verify.
func TestHashCoversPurpose(t *testing.T) {
	r := audit.Record{Seq: 7, Time: time.Unix(1700000000, 5), Action: "read", Subject: "nurse1", Patients: []string{"p1"}, PrevHash: make([]byte, 32)}
	plain := audit.Hash(r)
	r.Purpose = audit.PurposeBreakGlass
	if bytes.Equal(audit.Hash(r), plain) {
		t.Error("the purpose is not covered by the hash")
	}
	// The hash of a record without a purpose, as every earlier version computed it.
	const before = "16edb3e6160985b0fd425e4cffaee70b60ff285a0f05e3167d70386d4924355c"
	if got := hex.EncodeToString(plain); got != before {
		t.Errorf("hash of a record without a purpose changed: %s", got)
	}
}
