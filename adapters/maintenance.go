package adapters

import (
	"encoding/json"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"cfgcluster/kv"
)

// MaintenanceView is what the middleware needs: watch.Client has it.
type MaintenanceView interface {
	Maintenance(scope string) (kv.Window, bool)
}

// MaintenanceBody is the JSON answer during maintenance.
type MaintenanceBody struct {
	Code   string    `json:"code"` // "maintenance"
	Reason string    `json:"reason"`
	Scope  string    `json:"scope"`
	Ends   time.Time `json:"ends"`
}

// Maintenance returns middleware that answers 503 Service Unavailable, with
// Retry-After and the window's reason, while a window is open on service
// (or globally). Requests whose path is in exempt, or starts with an exempt
// entry ending in "/", pass (health checks, metrics, admin routes).
func Maintenance(view MaintenanceView, service string, exempt ...string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			win, open := view.Maintenance(service)
			if !open || isExempt(r.URL.Path, exempt) {
				next.ServeHTTP(w, r)
				return
			}
			secs := int(math.Ceil(time.Until(win.End).Seconds()))
			w.Header().Set("Retry-After", strconv.Itoa(max(secs, 1)))
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusServiceUnavailable)
			json.NewEncoder(w).Encode(MaintenanceBody{Code: "maintenance", Reason: win.Reason, Scope: win.Scope, Ends: win.End})
		})
	}
}

func isExempt(path string, exempt []string) bool {
	for _, e := range exempt {
		if path == e || strings.HasSuffix(e, "/") && strings.HasPrefix(path, e) {
			return true
		}
	}
	return false
}
