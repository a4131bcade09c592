package gateway

import (
	"embed"
	"fmt"
	"html/template"
	"net/http"
	"time"
)

//go:embed web/status.html web/status.css
var webFiles embed.FS

// statusPage renders the admin server's root: the gateway and its backends as an
// HTML table, refreshed by the browser (a meta refresh: no JavaScript, no CDN).
type statusPage struct {
	tmpl *template.Template
	css  template.CSS
}

func newStatusPage() (*statusPage, error) {
	css, err := webFiles.ReadFile("web/status.css")
	if err != nil {
		return nil, fmt.Errorf("gateway: status page: %w", err)
	}
	tmpl, err := template.New("status.html").Funcs(template.FuncMap{
		"duration": func(secs float64) string { return (time.Duration(secs) * time.Second).Round(time.Second).String() },
		"ms":       func(ms float64) string { return fmt.Sprintf("%g ms", ms) },
		"bytes":    humanBytes,
		"ago": func(t time.Time) string {
			if t.IsZero() {
				return ""
			}
			return time.Since(t).Round(time.Second).String()
		},
	}).ParseFS(webFiles, "web/status.html")
	if err != nil {
		return nil, fmt.Errorf("gateway: status page: %w", err)
	}
	return &statusPage{tmpl: tmpl, css: template.CSS(css)}, nil
}

func (p *statusPage) serve(g *Gateway) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		data := struct {
			S       Status
			CSS     template.CSS
			Refresh int
		}{g.Status(), p.css, 2}
		if err := p.tmpl.Execute(w, data); err != nil {
			g.log.Debug("status page", "err", err)
		}
	}
}

// humanBytes writes n bytes with a binary unit.
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
