package fhir

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/tendhealth/tend/internal/access"
	"github.com/tendhealth/tend/internal/auth"
	"github.com/tendhealth/tend/internal/store"
)

// subscriptionRoutes serves Subscription create, read, delete and $status.
// A subscription is visible only to the principal that created it, in its
// organisation; to anyone else it does not exist.
func (h *handler) subscriptionRoutes(subs *Subscriptions) {
	h.route("/fhir/Subscription", map[string]handlerFunc{
		http.MethodPost: func(w http.ResponseWriter, r *http.Request) error { return h.createSubscription(w, r, subs) },
	})
	h.route("/fhir/Subscription/{id}", map[string]handlerFunc{
		http.MethodGet:    func(w http.ResponseWriter, r *http.Request) error { return h.readSubscription(w, r, subs) },
		http.MethodDelete: func(w http.ResponseWriter, r *http.Request) error { return h.deleteSubscription(w, r, subs) },
	})
	h.route("/fhir/Subscription/{id}/$status", map[string]handlerFunc{
		http.MethodGet: func(w http.ResponseWriter, r *http.Request) error { return h.subscriptionStatus(w, r, subs) },
	})
}

func (h *handler) createSubscription(w http.ResponseWriter, r *http.Request, subs *Subscriptions) error {
	body, err := readBody(w, r, maxBody)
	if err != nil {
		return err
	}
	s, err := ParseSubscription(body)
	if err != nil {
		return err
	}
	p, _ := auth.PrincipalFrom(r.Context())
	if s.Patient != "" {
		// The same answer for a patient that does not exist and one the
		// caller may not see.
		if err := checkPatientID(r.Context(), h.store, s.Patient); err != nil {
			if errors.Is(err, store.ErrNotFound) || errors.Is(err, access.ErrNotVisible) {
				return errorf(http.StatusBadRequest, "invalid", "the filter names no patient you may see")
			}
			return err
		}
	}
	if p.Org == "" {
		p.Org = callerOrg(r.Context())
	}
	s, err = subs.Create(r.Context(), s, p)
	if err != nil {
		return err
	}
	return writeSubscription(w, r, http.StatusCreated, s, "requested")
}

func writeSubscription(w http.ResponseWriter, r *http.Request, status int, s Subscription, shown string) error {
	b, err := json.Marshal(s.Resource(shown))
	if err != nil {
		return err
	}
	writeResource(w, r, status, "Subscription", s.ID, s.Version, s.Created, b)
	return nil
}

// ownSubscription reads a subscription of the caller: anyone else's is
// not found.
func (h *handler) ownSubscription(ctx context.Context, subs *Subscriptions, id string) (Subscription, error) {
	if !validID(id) {
		return Subscription{}, store.ErrNotFound
	}
	s, err := subs.Get(ctx, id)
	if errors.Is(err, ErrSubscriptionGone) {
		if owns(ctx, s) {
			return s, errorf(http.StatusGone, "deleted", "the subscription was deleted")
		}
		return Subscription{}, store.ErrNotFound
	}
	if err != nil {
		return Subscription{}, err
	}
	if !owns(ctx, s) {
		return Subscription{}, store.ErrNotFound
	}
	return s, nil
}

func owns(ctx context.Context, s Subscription) bool {
	p, ok := auth.PrincipalFrom(ctx)
	if !ok {
		return s.Owner == "" // unauthenticated layer tests
	}
	return p.Subject == s.Owner && store.OrgOrDefault(callerOrg(ctx)) == s.OwnerOrg
}

func (h *handler) readSubscription(w http.ResponseWriter, r *http.Request, subs *Subscriptions) error {
	s, err := h.ownSubscription(r.Context(), subs, r.PathValue("id"))
	if err != nil {
		return err
	}
	st, err := subs.State(r.Context(), s)
	if err != nil {
		return err
	}
	return writeSubscription(w, r, http.StatusOK, s, st.Status)
}

func (h *handler) deleteSubscription(w http.ResponseWriter, r *http.Request, subs *Subscriptions) error {
	s, err := h.ownSubscription(r.Context(), subs, r.PathValue("id"))
	if err != nil {
		return err
	}
	if err := subs.Delete(r.Context(), s); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// subscriptionStatus answers $status: a searchset Bundle holding the
// SubscriptionStatus (Parameters in R4).
func (h *handler) subscriptionStatus(w http.ResponseWriter, r *http.Request, subs *Subscriptions) error {
	s, err := h.ownSubscription(r.Context(), subs, r.PathValue("id"))
	if err != nil {
		return err
	}
	st, err := subs.State(r.Context(), s)
	if err != nil {
		return err
	}
	params := statusParams(subs.Base, s, st.Status, NotifyQuery, st.Events, 0, nil, st.LastError)
	b := map[string]any{
		"resourceType": "Bundle",
		"type":         "searchset",
		"timestamp":    h.now().UTC().Format(time.RFC3339Nano),
		"total":        1,
		"entry": []any{map[string]any{
			"fullUrl":  "urn:uuid:" + s.ID + "-status-" + strconv.FormatInt(st.Events, 10),
			"resource": params,
			"search":   map[string]any{"mode": "match"},
		}},
	}
	writeJSON(w, http.StatusOK, b)
	return nil
}
