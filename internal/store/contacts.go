package store

import "context"

// ContactStore keeps where users are told about notices addressed to them
// by name (the privacy officer about break-glass access). It is embedded
// in Store.
type ContactStore interface {
	// SetUserContact sets a user's notification address ("email:ADDRESS"
	// or "webhook:ID", checked by the caller); "" removes it.
	SetUserContact(ctx context.Context, user, contact string) error
	// UserContact returns the user's address, "" when none is set.
	UserContact(ctx context.Context, user string) (string, error)
}
