package web

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/tendhealth/tend/internal/store"
)

// Sessions are signed cookies, not server-side rows, so any node holding the
// key can check them and a restart signs nobody out. The role is not in the
// cookie: it is read from the store on every request, so a changed role
// applies at once and a deleted user is signed out.
const (
	sessionCookie = "tend_session"
	preCookie     = "tend_signin" // CSRF pair of the sign-in form, before a session exists
	sessionTTL    = 12 * time.Hour
	csrfField     = "csrf"
)

// LoadOrCreateKey returns the session signing key kept at path, creating a
// new random one (mode 0600) the first time.
func LoadOrCreateKey(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err == nil && len(b) >= 32 {
		return b, nil
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read session key: %w", err)
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("generate session key: %w", err)
	}
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, key, 0o600); err != nil {
		return nil, fmt.Errorf("write session key: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return nil, fmt.Errorf("write session key: %w", err)
	}
	return key, nil
}

// session is a signed-in user.
type session struct {
	User    string
	Name    string
	Role    store.Role
	CSRF    string // token every POST form of this session must carry
	expires time.Time
}

type sessions struct {
	key []byte
	now func() time.Time
}

func (s sessions) mac(parts ...string) string {
	m := hmac.New(sha256.New, s.key)
	for _, p := range parts {
		m.Write([]byte(p))
		m.Write([]byte{0})
	}
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// issue returns the cookie value of a new session: user, expiry, a random
// nonce (which the CSRF token is derived from) and a MAC over them.
func (s sessions) issue(user string) (value string, expires time.Time) {
	nonce := make([]byte, 16)
	rand.Read(nonce)
	expires = s.now().Add(sessionTTL)
	body := strings.Join([]string{base64.RawURLEncoding.EncodeToString([]byte(user)),
		strconv.FormatInt(expires.Unix(), 10), base64.RawURLEncoding.EncodeToString(nonce)}, ".")
	return body + "." + s.mac("session", body), expires
}

// read checks the session cookie's signature and expiry; it does not load
// the user (see Handler.session).
func (s sessions) read(r *http.Request) (session, bool) {
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return session{}, false
	}
	parts := strings.Split(c.Value, ".")
	if len(parts) != 4 {
		return session{}, false
	}
	body := strings.Join(parts[:3], ".")
	if subtle.ConstantTimeCompare([]byte(parts[3]), []byte(s.mac("session", body))) != 1 {
		return session{}, false
	}
	user, err1 := base64.RawURLEncoding.DecodeString(parts[0])
	exp, err2 := strconv.ParseInt(parts[1], 10, 64)
	if err1 != nil || err2 != nil || !s.now().Before(time.Unix(exp, 0)) {
		return session{}, false
	}
	return session{User: string(user), CSRF: s.mac("csrf", parts[2]), expires: time.Unix(exp, 0)}, true
}

// setCookie sets a cookie that lasts ttl. Max-Age, not Expires: the
// browser's clock need not agree with Tend's.
func (h *Handler) setCookie(w http.ResponseWriter, r *http.Request, name, value string, ttl time.Duration) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: value, Path: "/", MaxAge: int(ttl / time.Second), HttpOnly: true,
		Secure: h.cfg.SecureCookies || r.TLS != nil, SameSite: http.SameSiteStrictMode})
}

func (h *Handler) clearCookie(w http.ResponseWriter, r *http.Request, name string) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: "", Path: "/", MaxAge: -1, HttpOnly: true,
		Secure: h.cfg.SecureCookies || r.TLS != nil, SameSite: http.SameSiteStrictMode})
}

type sessionKey struct{}

func sessionFrom(ctx context.Context) session {
	s, _ := ctx.Value(sessionKey{}).(session)
	return s
}

// allow admits a signed-in user whose role has perm. Deny by default: no
// session sends a page to the sign-in form (and an event stream or a POST
// gets 401); another role gets 403. Every POST must carry the session's
// CSRF token and, when the browser says where it comes from, come from
// this origin.
func (h *Handler) allow(perm permission, fn handlerFunc) http.Handler {
	return h.serve(func(w http.ResponseWriter, r *http.Request) error {
		sess, ok := h.sessions.read(r)
		if ok {
			u, err := h.cfg.Store.User(r.Context(), sess.User)
			switch {
			case errors.Is(err, store.ErrNotFound):
				ok = false
			case err != nil:
				return fmt.Errorf("load user: %w", err)
			default:
				sess.Name, sess.Role = u.Name, u.Role
			}
		}
		if !ok {
			if r.Method == http.MethodGet && !strings.HasPrefix(r.URL.Path, "/events/") && !strings.HasSuffix(r.URL.Path, "/series") {
				http.Redirect(w, r, "/signin?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
				return nil
			}
			return &pageError{Status: http.StatusUnauthorized, Message: "Please sign in again."}
		}
		if r.Method == http.MethodPost {
			if err := checkCSRF(r, sess.CSRF); err != nil {
				return err
			}
		}
		if !perm.allows(sess.Role) {
			return &pageError{Status: http.StatusForbidden, Message: fmt.Sprintf("Your role (%s) may not %s.", sess.Role, perm.what())}
		}
		return fn(w, r.WithContext(context.WithValue(r.Context(), sessionKey{}, sess)))
	})
}

var errCSRF = &pageError{Status: http.StatusForbidden, Message: "This form has expired or did not come from Tend; reload the page and try again."}

// checkCSRF wants the token in the form (or an X-CSRF-Token header) and,
// when the browser sends Origin or Sec-Fetch-Site, a same-origin request.
func checkCSRF(r *http.Request, want string) error {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" && site != "none" {
		return errCSRF
	}
	if o := r.Header.Get("Origin"); o != "" {
		u, err := url.Parse(o)
		if err != nil || u.Host != r.Host {
			return errCSRF
		}
	}
	got := r.Header.Get("X-CSRF-Token")
	if got == "" {
		r.Body = http.MaxBytesReader(nil, r.Body, 64<<10)
		got = r.PostFormValue(csrfField)
	}
	if want == "" || subtle.ConstantTimeCompare([]byte(got), []byte(want)) != 1 {
		return errCSRF
	}
	return nil
}

// safeNext keeps a post-sign-in redirect on this site.
func safeNext(next string) string {
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.HasPrefix(next, "/\\") {
		return "/"
	}
	return next
}

func (h *Handler) signinPage(w http.ResponseWriter, r *http.Request) error {
	return h.showSignin(w, r, http.StatusOK, "")
}

func (h *Handler) showSignin(w http.ResponseWriter, r *http.Request, status int, problem string) error {
	nonce := make([]byte, 16)
	rand.Read(nonce)
	token := base64.RawURLEncoding.EncodeToString(nonce)
	h.setCookie(w, r, preCookie, token, time.Hour)
	w.Header().Set("Cache-Control", "no-store")
	h.render(w, r, status, "signin", page{Title: "Sign in", CSRF: token,
		Data: map[string]string{"Next": safeNext(r.FormValue("next")), "Problem": problem}})
	return nil
}

// signin checks the password and starts a session. The form is protected
// by a double-submit token (cookie and field must match), so another site
// cannot sign a browser into an account of its choosing.
func (h *Handler) signin(w http.ResponseWriter, r *http.Request) error {
	pre, err := r.Cookie(preCookie)
	if err != nil || checkCSRF(r, pre.Value) != nil {
		return h.showSignin(w, r, http.StatusForbidden, "The sign-in form expired; please try again.")
	}
	name, password := strings.TrimSpace(r.PostFormValue("username")), r.PostFormValue("password")
	select {
	case h.signins <- struct{}{}:
	case <-r.Context().Done():
		return r.Context().Err()
	}
	u, err := h.cfg.Store.User(r.Context(), name)
	ok := err == nil && checkPassword(password, u.PasswordHash)
	<-h.signins
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("load user: %w", err)
	}
	if !ok {
		h.cfg.Logger.Info("dashboard sign-in refused") // no user name: it may be a mistyped password
		return h.showSignin(w, r, http.StatusUnauthorized, "Wrong username or password.")
	}
	value, _ := h.sessions.issue(u.ID)
	h.setCookie(w, r, sessionCookie, value, sessionTTL)
	h.clearCookie(w, r, preCookie)
	http.Redirect(w, r, safeNext(r.PostFormValue("next")), http.StatusSeeOther)
	return nil
}

func (h *Handler) signout(w http.ResponseWriter, r *http.Request) error {
	if sess, ok := h.sessions.read(r); ok {
		if err := checkCSRF(r, sess.CSRF); err != nil {
			return err
		}
	}
	h.clearCookie(w, r, sessionCookie)
	http.Redirect(w, r, "/signin", http.StatusSeeOther)
	return nil
}
