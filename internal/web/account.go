package web

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/tendhealth/tend/internal/signin"
	"github.com/tendhealth/tend/internal/totp"
)

// totpIssuer names Tend in authenticator apps.
const totpIssuer = "Tend"

func defaultChecker(cfg Config) (*signin.Checker, error) {
	sealer, err := totp.DerivedSealer(cfg.SessionKey)
	if err != nil {
		return nil, fmt.Errorf("web: %w", err)
	}
	return signin.New(signin.Config{Store: cfg.Store, Sealer: sealer, Now: cfg.Now, Logger: cfg.Logger,
		CheckPassword: func(p, h string) bool { return checkPassword(p, h) }}), nil
}

type accountData struct {
	Enabled  bool
	Required bool   // the user's role must use a second factor
	Secret   string // base32, grouped for typing; only while enrolling
	URI      string
	Next     string
	Problem  string
	Done     bool
}

// account shows the user's second factor: on, or a secret to enrol.
func (h *Handler) account(w http.ResponseWriter, r *http.Request) error {
	return h.showAccount(w, r, http.StatusOK, "", r.FormValue("done") == "1")
}

// showAccount renders the page. While the second factor is not on, it
// shows the pending secret, creating one if there is none (or it no longer
// opens), so a reload shows the same secret the person may have scanned.
func (h *Handler) showAccount(w http.ResponseWriter, r *http.Request, status int, problem string, done bool) error {
	ctx := r.Context()
	sess := sessionFrom(ctx)
	tf, err := h.cfg.Store.UserTOTP(ctx, sess.User)
	if err != nil {
		return fmt.Errorf("load second factor: %w", err)
	}
	d := accountData{Enabled: tf.Enabled, Required: h.checker.Requires(sess.Role), Problem: problem, Done: done}
	if next := r.FormValue("next"); next != "" { // where a required enrolment interrupted the person
		d.Next = safeNext(next)
	}
	sealer := h.checker.Sealer()
	if !tf.Enabled && sealer != nil {
		secret, err := sealer.Open(sess.User, tf.Secret)
		if err != nil { // none pending yet (or sealed under another key)
			secret = totp.NewSecret()
			if err := h.cfg.Store.SetUserTOTP(ctx, sess.User, sealer.Seal(sess.User, secret), false); err != nil {
				return fmt.Errorf("store pending second factor: %w", err)
			}
		}
		d.Secret, d.URI = groupSecret(totp.EncodeSecret(secret)), totp.URI(totpIssuer, sess.User, secret)
	}
	w.Header().Set("Cache-Control", "no-store")
	h.render(w, r, status, "account", page{Title: "Account", Nav: "account", Session: sess, Data: d})
	return nil
}

func groupSecret(s string) string {
	var b strings.Builder
	for i, c := range s {
		if i > 0 && i%4 == 0 {
			b.WriteByte(' ')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// enrolTOTP switches the second factor on once the person proves their app
// has the pending secret by typing a current code. The code is then used
// up, and every other session of the user ends: they were opened with the
// password alone.
func (h *Handler) enrolTOTP(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	sess := sessionFrom(ctx)
	sealer := h.checker.Sealer()
	tf, err := h.cfg.Store.UserTOTP(ctx, sess.User)
	if err != nil {
		return fmt.Errorf("load second factor: %w", err)
	}
	if tf.Enabled {
		return h.showAccount(w, r, http.StatusConflict, "Your authenticator app is already set up.", false)
	}
	if sealer == nil {
		return &pageError{Status: http.StatusServiceUnavailable, Message: "Second factors are not available on this installation."}
	}
	secret, err := sealer.Open(sess.User, tf.Secret)
	if err != nil {
		return h.showAccount(w, r, http.StatusConflict, "This setup expired; scan the new code below.", false)
	}
	code, err := totp.ParseCode(r.PostFormValue("code"))
	if err != nil {
		return h.showAccount(w, r, http.StatusBadRequest, "Type the 6-digit code your app shows.", false)
	}
	step, ok := totp.Validate(secret, code, h.cfg.Now())
	if !ok {
		return h.showAccount(w, r, http.StatusBadRequest, "That code does not match; check the time on your phone and try the next code.", false)
	}
	if err := h.cfg.Store.SetUserTOTP(ctx, sess.User, tf.Secret, true); err != nil {
		return fmt.Errorf("switch on second factor: %w", err)
	}
	if _, err := h.cfg.Store.AcceptTOTPStep(ctx, sess.User, step); err != nil {
		return fmt.Errorf("use up enrolment code: %w", err)
	}
	if _, err := h.cfg.Store.RevokeUserSessions(ctx, sess.User, sess.id); err != nil {
		return fmt.Errorf("end other sessions: %w", err)
	}
	h.cfg.Logger.Info("second factor switched on", "user", sess.User)
	if next := r.PostFormValue("next"); next != "" && next != "/account" && !strings.HasPrefix(next, "/account?") {
		http.Redirect(w, r, safeNext(next), http.StatusSeeOther)
		return nil
	}
	http.Redirect(w, r, "/account?"+url.Values{"done": {"1"}}.Encode(), http.StatusSeeOther)
	return nil
}
