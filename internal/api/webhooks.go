package api

import (
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/tendhealth/tend/internal/alarm"
	"github.com/tendhealth/tend/internal/auth"
)

const (
	maxWebhookURL         = 2048
	maxWebhookDescription = 200
)

// webhookID is a short random lowercase id usable as a recipient name
// (webhook:ID) in escalation documents: "wh" and 12 base32 letters/digits.
func webhookID() string {
	var b [8]byte
	rand.Read(b[:]) // never fails (crypto/rand documents it)
	return "wh" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))[:12]
}

// postWebhook registers an endpoint and returns the secret that signs its
// deliveries; the API never shows the secret again.
func (h *Handler) postWebhook(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		URL         string `json:"url"`
		Description string `json:"description"`
	}
	if err := decodeBody(w, r, &req, 64<<10, false); err != nil {
		return err
	}
	if err := checkWebhookURL(req.URL); err != nil {
		return &Error{Status: http.StatusUnprocessableEntity, Detail: err.Error()}
	}
	if len(req.Description) > maxWebhookDescription {
		return &Error{Status: http.StatusUnprocessableEntity, Detail: fmt.Sprintf("description is longer than %d bytes", maxWebhookDescription)}
	}
	secret := auth.NewSecret()
	// The store has no description column yet; it is accepted (and echoed)
	// so clients need not change when it gains one.
	hook := alarm.Webhook{ID: webhookID(), URL: req.URL, Secret: []byte(secret), Created: h.cfg.Now().UTC()}
	if err := h.cfg.AlarmStore.PutWebhook(r.Context(), hook); err != nil {
		return fmt.Errorf("store webhook: %w", err)
	}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Location", "/api/v1/webhooks/"+hook.ID)
	return writeJSON(w, http.StatusCreated, map[string]any{"id": hook.ID, "url": hook.URL, "secret": secret,
		"recipient": alarm.RecipientWebhook + ":" + hook.ID, "description": req.Description, "created": hook.Created})
}

func checkWebhookURL(s string) error {
	if s == "" {
		return errors.New(`url is required, e.g. "https://example.org/tend-hook"`)
	}
	if len(s) > maxWebhookURL {
		return fmt.Errorf("url is longer than %d bytes", maxWebhookURL)
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.Opaque != "" {
		return fmt.Errorf("url %q: use an absolute http:// or https:// URL", clipText(s))
	}
	if u.User != nil {
		return errors.New("url: put no credentials in the URL; verify the Tend-Signature header with the secret instead")
	}
	if u.Fragment != "" {
		return errors.New("url: a fragment (#…) is never sent; leave it out")
	}
	return nil
}

// listWebhooks lists registered webhooks; secrets are never shown again.
func (h *Handler) listWebhooks(w http.ResponseWriter, r *http.Request) error {
	ws, err := h.cfg.AlarmStore.Webhooks(r.Context())
	if err != nil {
		return fmt.Errorf("list webhooks: %w", err)
	}
	if ws == nil {
		ws = []alarm.Webhook{} // alarm.Webhook's JSON leaves out Secret
	}
	return writeJSON(w, http.StatusOK, map[string]any{"webhooks": ws})
}

func (h *Handler) deleteWebhook(w http.ResponseWriter, r *http.Request) error {
	err := h.cfg.AlarmStore.DeleteWebhook(r.Context(), r.PathValue("id"))
	if errors.Is(err, alarm.ErrNotFound) {
		return &Error{Status: http.StatusNotFound, Detail: "no such webhook"}
	}
	if err != nil {
		return fmt.Errorf("delete webhook: %w", err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
