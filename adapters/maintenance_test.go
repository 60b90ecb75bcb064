package adapters

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"cfgcluster/kv"
)

type fixedView struct {
	w  kv.Window
	on bool
}

func (f fixedView) Maintenance(string) (kv.Window, bool) { return f.w, f.on }

func TestMaintenanceMiddleware(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("served")) })
	view := fixedView{w: kv.Window{Scope: "billing", Reason: "db upgrade", End: time.Now().Add(90 * time.Second)}, on: true}
	h := Maintenance(view, "billing", "/healthz", "/admin/")(ok)
	for path, want := range map[string]int{"/orders": 503, "/healthz": 200, "/admin/x": 200, "/healthz/deep": 503} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		if rec.Code != want {
			t.Errorf("%s: %d, want %d", path, rec.Code, want)
		}
		if want == 503 {
			if ra := rec.Header().Get("Retry-After"); ra != "90" && ra != "89" {
				t.Errorf("Retry-After %q", ra)
			}
			if !strings.Contains(rec.Body.String(), "db upgrade") {
				t.Errorf("body %s", rec.Body)
			}
		}
	}
	rec := httptest.NewRecorder()
	Maintenance(fixedView{}, "billing")(ok).ServeHTTP(rec, httptest.NewRequest("GET", "/orders", nil))
	if rec.Code != 200 || rec.Body.String() != "served" {
		t.Fatal("no window: the request must pass")
	}
}
