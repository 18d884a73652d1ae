package web

import (
	"context"

	"github.com/tendhealth/tend/internal/audit"
	"github.com/tendhealth/tend/internal/auth"
	"github.com/tendhealth/tend/internal/store"
)

// noteAgent tells the audit trail (package audit, which records the
// dashboard's patient and alarm pages) who the signed-in user is.
func noteAgent(ctx context.Context, s session) {
	audit.SetAgent(ctx, auth.Principal{Subject: s.User, Role: string(s.Role), Org: s.Org})
}

// noteSignin names the user a sign-in was for, once the password matched;
// a refused attempt is recorded without a name, which may be a password
// typed into the wrong field.
func noteSignin(ctx context.Context, u store.User) {
	audit.SetAgent(ctx, auth.Principal{Subject: u.ID, Role: string(u.Role)})
}
