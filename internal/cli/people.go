package cli

import (
	"fmt"
	"strings"

	"github.com/tendhealth/tend/internal/store"
)

// parseRoles reads a comma-separated list of roles (--require-totp).
func parseRoles(s string) ([]store.Role, error) {
	var out []store.Role
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		ok := false
		for _, r := range store.Roles {
			ok = ok || string(r) == part
		}
		if !ok {
			return nil, fmt.Errorf("unknown role %q (roles: %s)", part, roleList())
		}
		out = append(out, store.Role(part))
	}
	return out, nil
}

func roleList() string {
	var names []string
	for _, r := range store.Roles {
		names = append(names, string(r))
	}
	return strings.Join(names, ", ")
}
