package web

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"strings"
	"time"
)

//go:embed templates
var templateFS embed.FS

const clockLayout = "2006-01-02 15:04:05Z"

// page is what every template gets.
type page struct {
	Title   string
	Nav     string // which menu entry is current
	Session session
	CSRF    string // token for the page's forms
	Now     time.Time
	Data    any
}

// pages holds one template set per page (layout + partials + the page), so
// that each page's "content" block is its own.
type pages struct {
	byName map[string]*template.Template
	parts  *template.Template // partials rendered alone into live updates
}

var pageNames = []string{"signin", "error", "ward", "patient", "alarms", "devices", "credentials", "users", "account",
	"teams", "consents", "org", "grants", "breakglass", "audit", "rules"} // admin.go, breakglass.go, auditlog.go, rules.go

var funcs = template.FuncMap{
	"ago":      ago,
	"rfc3339":  func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	"clock":    func(t time.Time) string { return t.UTC().Format(clockLayout) },
	"upper":    strings.ToUpper,
	"nonzero":  func(t time.Time) bool { return !t.IsZero() },
	"newHigh":  isNewHigh,
	"rangeSel": func(cur, r string) bool { return cur == r },
	"tileOf":   func(now time.Time, row rowView) tileData { return tileData{Row: row, Now: now} },
}

func parsePages() (*pages, error) {
	base, err := template.New("").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/partials.html")
	if err != nil {
		return nil, fmt.Errorf("web: parse layout: %w", err)
	}
	p := &pages{byName: map[string]*template.Template{}, parts: base}
	for _, name := range pageNames {
		t, err := template.Must(base.Clone()).ParseFS(templateFS, "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("web: parse %s: %w", name, err)
		}
		p.byName[name] = t
	}
	return p, nil
}

// render writes a whole page. It renders into a buffer first, so a
// template error becomes a 500 rather than half a page.
func (h *Handler) render(w http.ResponseWriter, r *http.Request, status int, name string, p page) {
	if p.Now.IsZero() {
		p.Now = h.cfg.Now()
	}
	if p.CSRF == "" {
		p.CSRF = p.Session.CSRF
	}
	var buf bytes.Buffer
	if err := h.pages.byName[name].ExecuteTemplate(&buf, "layout", p); err != nil {
		h.cfg.Logger.Error("render page", "page", name, "err", err)
		http.Error(w, "Tend could not show this page.", http.StatusInternalServerError)
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", "text/html; charset=utf-8")
	if hd.Get("Cache-Control") == "" {
		hd.Set("Cache-Control", "no-store") // pages hold patient data
	}
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// renderPart renders one partial (a tile, the inbox list) for a live update.
func (h *Handler) renderPart(w io.Writer, name string, data any) error {
	return h.pages.parts.ExecuteTemplate(w, name, data)
}

// ago is a short age ("12 s", "5 min", "3 h", "2 d").
func ago(now, t time.Time) string {
	d := now.Sub(t)
	switch {
	case d < 0:
		return "now"
	case d < time.Minute:
		return fmt.Sprintf("%d s", int(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%d min", int(d/time.Minute))
	case d < 48*time.Hour:
		return fmt.Sprintf("%d h", int(d/time.Hour))
	}
	return fmt.Sprintf("%d d", int(d/(24*time.Hour)))
}
