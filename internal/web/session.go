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
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/tendhealth/tend/internal/signin"
	"github.com/tendhealth/tend/internal/store"
)

// Sessions live in the store, not in the cookie: the cookie carries only a
// random 256-bit value and the store keeps its SHA-256, so signing out, an
// idle timeout or a revocation ends the session on every node at once, and
// a copy of the database signs nobody in. The role is read from the store
// on every request, so a changed role applies at once and a deleted user is
// signed out.
const (
	sessionCookie       = "tend_session"
	secureSessionCookie = "__Host-tend_session" // over TLS: the browser pins it to this host
	preCookie           = "tend_signin"         // CSRF pair of the sign-in form, before a session exists
	sessionTTL          = 12 * time.Hour
	// DefaultSessionIdle ends a session unused for this long.
	DefaultSessionIdle = 15 * time.Minute
	// touchEvery bounds the writes idle tracking costs: last use is
	// recorded at most once a minute per session, so idle logoff may come
	// up to a minute early.
	touchEvery = time.Minute
	csrfField  = "csrf"
)

// LoadOrCreateKey returns the key kept at path, creating a new random one
// (mode 0600) the first time.
func LoadOrCreateKey(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err == nil && len(b) >= 32 {
		return b, nil
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read key %s: %w", filepath.Base(path), err)
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, key, 0o600); err != nil {
		return nil, fmt.Errorf("write key %s: %w", filepath.Base(path), err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return nil, fmt.Errorf("write key %s: %w", filepath.Base(path), err)
	}
	return key, nil
}

// session is a signed-in user.
type session struct {
	User string
	Name string
	Role store.Role
	Org  string
	CSRF string // token every POST form of this session must carry
	id   []byte // store key: SHA-256 of the cookie value
}

type sessions struct {
	store  store.Store
	now    func() time.Time
	idle   time.Duration
	secure bool // cookies are Secure (and __Host-) even on plain HTTP
}

func sessionID(value string) []byte {
	h := sha256.Sum256([]byte(value))
	return h[:]
}

// csrfFor derives the session's CSRF token from the cookie value itself
// (HMAC keyed with it): only a page of this origin, which received the
// token, can send it, and every node derives the same token without
// sharing a key.
func csrfFor(value string) string {
	m := hmac.New(sha256.New, []byte(value))
	m.Write([]byte("tend csrf v1"))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func (s sessions) secureFor(r *http.Request) bool { return s.secure || r.TLS != nil }

func (s sessions) cookieName(r *http.Request) string {
	if s.secureFor(r) {
		return secureSessionCookie
	}
	return sessionCookie
}

// create stores a new session for u and returns the cookie value.
func (s sessions) create(ctx context.Context, u store.User) (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("session value: %w", err)
	}
	value := base64.RawURLEncoding.EncodeToString(b[:])
	now := s.now().UTC()
	err := s.store.CreateSession(ctx, store.Session{ID: sessionID(value), User: u.ID, Org: u.Org, Created: now,
		LastSeen: now, Expires: now.Add(sessionTTL), Idle: s.idle})
	if err != nil {
		return "", fmt.Errorf("create session: %w", err)
	}
	return value, nil
}

// load returns the live session of the request's cookie. A session past
// its idle or absolute end is deleted; a live one is touched at most once
// a minute. It does not load the user (see Handler.authenticate).
func (s sessions) load(r *http.Request) (session, bool, error) {
	c, err := r.Cookie(s.cookieName(r))
	if err != nil || len(c.Value) != 43 { // 32 bytes, base64url
		return session{}, false, nil
	}
	ctx, id, now := r.Context(), sessionID(c.Value), s.now()
	row, err := s.store.Session(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return session{}, false, nil
	}
	if err != nil {
		return session{}, false, fmt.Errorf("load session: %w", err)
	}
	if !row.Live(now) {
		if err := s.store.DeleteSession(ctx, id); err != nil {
			return session{}, false, fmt.Errorf("end session: %w", err)
		}
		return session{}, false, nil
	}
	if now.Sub(row.LastSeen) >= touchEvery {
		if err := s.store.TouchSession(ctx, id, now); err != nil && !errors.Is(err, store.ErrNotFound) {
			return session{}, false, fmt.Errorf("touch session: %w", err)
		}
	}
	return session{User: row.User, Org: row.Org, CSRF: csrfFor(c.Value), id: id}, true, nil
}

// read is load for callers that only want to know who is signed in (the
// menu of an error page); a store error counts as signed out.
func (s sessions) read(r *http.Request) (session, bool) {
	sess, ok, err := s.load(r)
	return sess, ok && err == nil
}

// setCookie sets a cookie that lasts ttl. Max-Age, not Expires: the
// browser's clock need not agree with Tend's.
func (h *Handler) setCookie(w http.ResponseWriter, r *http.Request, name, value string, ttl time.Duration) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: value, Path: "/", MaxAge: int(ttl / time.Second), HttpOnly: true,
		Secure: h.sessions.secureFor(r), SameSite: http.SameSiteStrictMode})
}

func (h *Handler) clearCookie(w http.ResponseWriter, r *http.Request, name string) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: "", Path: "/", MaxAge: -1, HttpOnly: true,
		Secure: h.sessions.secureFor(r), SameSite: http.SameSiteStrictMode})
}

type sessionKey struct{}

func sessionFrom(ctx context.Context) session {
	s, _ := ctx.Value(sessionKey{}).(session)
	return s
}

// authenticate returns the request's session with its user loaded; ok is
// false when nobody is signed in (or the user is gone).
func (h *Handler) authenticate(r *http.Request) (sess session, ok bool, err error) {
	sess, ok, err = h.sessions.load(r)
	if err != nil || !ok {
		return session{}, false, err
	}
	u, err := h.cfg.Store.User(r.Context(), sess.User)
	if errors.Is(err, store.ErrNotFound) {
		return session{}, false, h.cfg.Store.DeleteSession(r.Context(), sess.id)
	}
	if err != nil {
		return session{}, false, fmt.Errorf("load user: %w", err)
	}
	sess.Name, sess.Role = u.Name, u.Role
	if sess.Org == "" {
		sess.Org = u.Org
	}
	return sess, true, nil
}

// mustEnrol reports whether the user's role requires a second factor the
// user has not set up yet.
func (h *Handler) mustEnrol(ctx context.Context, sess session) (bool, error) {
	if !h.checker.Requires(sess.Role) {
		return false, nil
	}
	tf, err := h.cfg.Store.UserTOTP(ctx, sess.User)
	if err != nil {
		return false, fmt.Errorf("load second factor: %w", err)
	}
	return !tf.Enabled, nil
}

// allow admits a signed-in user whose role has perm. Deny by default: no
// session sends a page to the sign-in form (and an event stream or a POST
// gets 401); another role gets 403; a user who must first set up a second
// factor is sent to /account. Every POST must carry the session's CSRF
// token and, when the browser says where it comes from, come from this
// origin.
func (h *Handler) allow(perm permission, fn handlerFunc) http.Handler {
	return h.signedIn(func(w http.ResponseWriter, r *http.Request) error {
		sess := sessionFrom(r.Context())
		enrol, err := h.mustEnrol(r.Context(), sess)
		if err != nil {
			return err
		}
		if enrol {
			if r.Method == http.MethodGet && !isBackground(r) {
				http.Redirect(w, r, "/account?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
				return nil
			}
			return &pageError{Status: http.StatusForbidden, Message: "Set up your authenticator app under Account first."}
		}
		if !perm.allows(sess.Role) {
			return &pageError{Status: http.StatusForbidden, Message: fmt.Sprintf("Your role (%s) may not %s.", sess.Role, perm.what())}
		}
		return fn(w, r)
	})
}

// isBackground tells requests scripts make (event streams, chart data)
// from pages a person opens: those get 401, not a redirect.
func isBackground(r *http.Request) bool {
	return strings.HasPrefix(r.URL.Path, "/events/") || strings.HasSuffix(r.URL.Path, "/series")
}

// signedIn admits any signed-in user (checking CSRF on POST). An event
// stream ends once its session does (signed out elsewhere, revoked or
// expired), checked every touchEvery.
func (h *Handler) signedIn(fn handlerFunc) http.Handler {
	return h.serve(func(w http.ResponseWriter, r *http.Request) error {
		sess, ok, err := h.authenticate(r)
		if err != nil {
			return err
		}
		if !ok {
			if r.Method == http.MethodGet && !isBackground(r) {
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
		noteAgent(r.Context(), sess) // audit.go
		ctx := context.WithValue(r.Context(), sessionKey{}, sess)
		if strings.HasPrefix(r.URL.Path, "/events/") {
			var cancel context.CancelFunc
			ctx, cancel = context.WithCancel(ctx)
			defer cancel()
			go h.watchSession(ctx, cancel, sess.id)
		}
		return fn(w, r.WithContext(ctx))
	})
}

// watchSession cancels a long-lived request once its session is gone. A
// stream is not activity: it does not keep the session alive.
func (h *Handler) watchSession(ctx context.Context, cancel context.CancelFunc, id []byte) {
	t := time.NewTicker(h.watchEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			row, err := h.cfg.Store.Session(ctx, id)
			if errors.Is(err, store.ErrNotFound) || (err == nil && !row.Live(h.cfg.Now())) {
				cancel()
				return
			}
		}
	}
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

// clientAddr is the address sign-in failures are counted under.
func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// signin checks the password (and code) and starts a session. The form is
// protected by a double-submit token (cookie and field must match), so
// another site cannot sign a browser into an account of its choosing.
// Every refusal shows the same message (see package signin).
func (h *Handler) signin(w http.ResponseWriter, r *http.Request) error {
	pre, err := r.Cookie(preCookie)
	if err != nil || checkCSRF(r, pre.Value) != nil {
		return h.showSignin(w, r, http.StatusForbidden, "The sign-in form expired; please try again.")
	}
	res, err := h.checker.Check(r.Context(), signin.Attempt{Username: strings.TrimSpace(r.PostFormValue("username")),
		Password: r.PostFormValue("password"), Code: r.PostFormValue("code"), Source: clientAddr(r), Via: "web"})
	if errors.Is(err, signin.ErrRefused) {
		return h.showSignin(w, r, http.StatusUnauthorized, "Wrong username or password.")
	}
	if err != nil {
		return err
	}
	noteSignin(r.Context(), res.User) // audit.go
	// A session cookie the browser still had is ended, not reused: a new
	// sign-in always gets a new value (no session fixation).
	if old, ok := h.sessions.read(r); ok {
		if err := h.cfg.Store.DeleteSession(r.Context(), old.id); err != nil {
			return fmt.Errorf("end previous session: %w", err)
		}
	}
	value, err := h.sessions.create(r.Context(), res.User)
	if err != nil {
		return err
	}
	if _, err := h.cfg.Store.SweepSessions(r.Context(), h.cfg.Now()); err != nil {
		h.cfg.Logger.Warn("could not delete ended sessions", "err", err)
	}
	h.setCookie(w, r, h.sessions.cookieName(r), value, sessionTTL)
	h.clearCookie(w, r, preCookie)
	next := safeNext(r.PostFormValue("next"))
	if res.MustEnrol {
		next = "/account?next=" + url.QueryEscape(next)
	}
	http.Redirect(w, r, next, http.StatusSeeOther)
	return nil
}

// signout ends the session everywhere: the row is deleted, so a copy of
// the cookie no longer works on any node.
func (h *Handler) signout(w http.ResponseWriter, r *http.Request) error {
	sess, ok, err := h.sessions.load(r)
	if err != nil {
		return err
	}
	if ok {
		if err := checkCSRF(r, sess.CSRF); err != nil {
			return err
		}
		if err := h.cfg.Store.DeleteSession(r.Context(), sess.id); err != nil {
			return fmt.Errorf("end session: %w", err)
		}
	}
	h.clearCookie(w, r, h.sessions.cookieName(r))
	http.Redirect(w, r, "/signin", http.StatusSeeOther)
	return nil
}
