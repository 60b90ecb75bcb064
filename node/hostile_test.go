package node_test

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// raw sends a request as a hostile or careless caller would.
func raw(t *testing.T, method, url, body string, header map[string]string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	if _, ok := header["Authorization"]; !ok && req.URL != nil {
		req.Header.Set("Authorization", "Bearer "+tokenOf(req.URL.Host))
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(data)
}

// A web page cannot write through a browser that reaches the node, and an
// ambiguous or trailing body is refused, naming the field.
func TestWritesRefuseHostileRequests(t *testing.T) {
	n, c := startNode(t, "../examples/schema.yaml")
	u := n.APIURL()
	apply := `{"changes": [{"key": "log.level", "value": "warn"}]}`
	jsonCT := map[string]string{"Content-Type": "application/json"}
	for _, tc := range []struct {
		name, method, path, body string
		header                   map[string]string
		status                   int
		phrase                   string
	}{
		{"text/plain from a foreign origin", "POST", "/v1/apply", apply,
			map[string]string{"Content-Type": "text/plain", "Origin": "https://evil.example"}, 403, "cross-origin"},
		{"json from a foreign origin", "POST", "/v1/apply", apply,
			map[string]string{"Content-Type": "application/json", "Origin": "https://evil.example"}, 403, "cross-origin"},
		{"cross-site fetch metadata", "PUT", "/v1/keys/log.level", `{"value": "warn"}`,
			map[string]string{"Content-Type": "application/json", "Sec-Fetch-Site": "cross-site"}, 403, "cross-origin"},
		{"cross-site delete", "DELETE", "/v1/keys/log.level", "",
			map[string]string{"Sec-Fetch-Site": "cross-site"}, 403, "cross-origin"},
		{"text/plain", "POST", "/v1/apply", apply, map[string]string{"Content-Type": "text/plain"}, 400, "Content-Type"},
		{"no content type", "PUT", "/v1/keys/log.level", `{"value": "warn"}`, nil, 400, "Content-Type"},
		{"stray ]", "POST", "/v1/apply", apply + "]", jsonCT, 400, "trailing data"},
		{"stray }}}", "PUT", "/v1/keys/log.level", `{"value": "warn"}}}}`, jsonCT, 400, "trailing data"},
		{"value and text", "PUT", "/v1/keys/log.level", `{"value": "warn", "text": "error"}`, jsonCT, 400, "exactly one"},
		{"value and delete", "POST", "/v1/apply", `{"changes": [{"key": "log.level", "value": "warn", "delete": true}]}`, jsonCT, 400, "exactly one"},
		{"text and delete", "POST", "/v1/apply", `{"changes": [{"key": "log.level", "text": "warn", "delete": true}]}`, jsonCT, 400, "exactly one"},
	} {
		status, body := raw(t, tc.method, u+tc.path, tc.body, tc.header)
		if status != tc.status || !strings.Contains(body, tc.phrase) {
			t.Errorf("%s: %d %s", tc.name, status, body)
		}
	}
	a, err := c.Audit(bg(t), "", 0, 0)
	if err != nil || nonAuth(a.Records) != 1 { // the schema's
		t.Fatalf("a refused request wrote: %d records, %v", len(a.Records), err)
	}
	// The same origin, and reads from anywhere, pass.
	if status, body := raw(t, "POST", u+"/v1/apply", apply, map[string]string{"Content-Type": "application/json; charset=utf-8", "Origin": u}); status != 200 {
		t.Fatalf("same-origin write: %d %s", status, body)
	}
	if status, _ := raw(t, "GET", u+"/v1/keys/log.level", "", map[string]string{"Origin": "https://evil.example"}); status != 200 {
		t.Fatalf("cross-origin read: %d", status)
	}
}
