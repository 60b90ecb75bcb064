package node

import (
	"bytes"
	"net/http/httptest"
	"testing"

	"cfgcluster/api"
	"cfgcluster/cfgerr"
)

// FuzzDecode: any body either decodes strictly into a request or is refused
// with an Invalid error naming the body; it never panics.
func FuzzDecode(f *testing.F) {
	for _, b := range []string{
		`{"changes": [{"key": "a", "value": 1}]}`, `{"changes": []}]`, `{"value": 1}}}}`, `{"value": 1, "text": "x"}`,
		`{"changes": [{"key": "a", "value": {"x": 1e400}}]}`, `[]`, `{"valu": 1}`, "",
	} {
		f.Add([]byte(b))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, v := range []any{&api.ApplyRequest{}, &api.SetRequest{}, &api.MaintenanceRequest{}, &api.SchemaRequest{}} {
			r := httptest.NewRequest("POST", "/v1/apply", bytes.NewReader(body))
			if err := decode(r, v); err != nil {
				if e := cfgerr.First(err); e == nil || e.Code != cfgerr.Invalid || e.Field != "body" {
					t.Fatalf("%T: refusal %v", v, err)
				}
			}
		}
	})
}
