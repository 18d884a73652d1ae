package cli

import (
	"slices"
	"testing"

	"github.com/tendhealth/tend/internal/store"
)

func TestParseRoles(t *testing.T) {
	tests := []struct {
		in      string
		want    []store.Role
		wantErr bool
	}{
		{"", nil, false},
		{"admin", []store.Role{store.RoleAdmin}, false},
		{" admin , clinician,", []store.Role{store.RoleAdmin, store.RoleClinician}, false},
		{"admin,doctor", nil, true},
		{"Admin", nil, true},
	}
	for _, tc := range tests {
		got, err := parseRoles(tc.in)
		if (err != nil) != tc.wantErr || !slices.Equal(got, tc.want) {
			t.Errorf("parseRoles(%q) = %v, %v; want %v, error %v", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
}
