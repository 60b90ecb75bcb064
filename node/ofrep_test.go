package node_test

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"cfgcluster/api"
)

// ofrep posts an OFREP request with token and returns the status, the
// decoded body and the response.
func ofrep(t *testing.T, url, token, body string, header ...string) (int, map[string]any, *http.Response) {
	t.Helper()
	hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var out map[string]any
	json.Unmarshal(data, &out)
	return resp.StatusCode, out, resp
}

// The node answers OFREP: one flag (value, variant, reason, metadata; 404
// for a missing flag, 400 for a bad context, no value where the caller's
// default is the answer), all flags with an ETag that answers 304 until a
// flag changes, an event stream that says refetchEvaluation when one does,
// and only the flags a token may read.
func TestOFREP(t *testing.T) {
	n, c := startNode(t, "../examples/schema.yaml")
	ctx := bg(t)
	for key, def := range map[string]string{
		"flags.new-checkout": `{"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
			"targeting": {"if": [{"ends_with": [{"var": "email"}, "@example.com"]}, "on"]}, "metadata": {"team": "web"}}`,
		"flags.dark-mode":     `{"state": "DISABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off"}`,
		"flags.billing-limit": `{"state": "ENABLED", "variants": {"low": 10, "high": 1000}}`,
	} {
		if _, err := c.Set(ctx, key, api.SetRequest{Text: str(def)}); err != nil {
			t.Fatal(key, err)
		}
	}
	base := n.APIURL() + "/ofrep/v1/evaluate/flags"
	code, body, _ := ofrep(t, base+"/new-checkout", c.Token, `{"context": {"targetingKey": "u1", "email": "ada@example.com"}}`)
	if code != 200 || body["value"] != true || body["variant"] != "on" || body["reason"] != "TARGETING_MATCH" ||
		body["key"] != "new-checkout" || body["metadata"].(map[string]any)["team"] != "web" {
		t.Fatalf("%d %v", code, body)
	}
	// Disabled, and no default variant: no value, the caller's default.
	for key, reason := range map[string]string{"dark-mode": "DISABLED", "billing-limit": "DEFAULT"} {
		code, body, _ = ofrep(t, base+"/"+key, c.Token, `{"context": {}}`)
		if _, has := body["value"]; code != 200 || has || body["reason"] != reason {
			t.Fatalf("%s: %d %v", key, code, body)
		}
	}
	code, body, _ = ofrep(t, base+"/nope", c.Token, `{"context": {}}`)
	if code != 404 || body["errorCode"] != "FLAG_NOT_FOUND" {
		t.Fatalf("%d %v", code, body)
	}
	code, body, _ = ofrep(t, base+"/new-checkout", c.Token, `{"context": "secret-sauce"}`)
	if code != 400 || body["errorCode"] != "INVALID_CONTEXT" || strings.Contains(body["errorDetails"].(string), "secret-sauce") {
		t.Fatalf("%d %v", code, body)
	}

	// Bulk, with the ETag.
	code, body, resp := ofrep(t, base, c.Token, `{"context": {"targetingKey": "u2"}}`)
	etag := resp.Header.Get("ETag")
	if code != 200 || etag == "" || len(body["flags"].([]any)) != 3 {
		t.Fatalf("%d %q %v", code, etag, body)
	}
	if code, _, _ = ofrep(t, base, c.Token, `{"context": {"targetingKey": "u2"}}`, "If-None-Match", etag); code != 304 {
		t.Fatalf("unchanged: %d", code)
	}
	// The event stream, then a change: refetchEvaluation, and a new ETag.
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, n.APIURL()+"/ofrep/v1/events", nil)
	req.Header.Set("Authorization", "Bearer "+c.Token)
	hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	stream, err := hc.Do(req)
	if err != nil || stream.StatusCode != 200 {
		t.Fatalf("events: %v %v", stream, err)
	}
	defer stream.Body.Close()
	lines := bufio.NewScanner(stream.Body)
	lines.Scan() // the opening comment: the stream is subscribed
	if _, err := c.Set(ctx, "flags.dark-mode", api.SetRequest{Text: str(`{"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"}`)}); err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 1)
	go func() {
		for lines.Scan() {
			if strings.HasPrefix(lines.Text(), "data: ") {
				got <- lines.Text()
				return
			}
		}
	}()
	select {
	case line := <-got:
		if !strings.Contains(line, `"type":"refetchEvaluation"`) {
			t.Fatalf("event %q", line)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no refetchEvaluation within 10 s of a flag change")
	}
	if code, _, resp = ofrep(t, base, c.Token, `{"context": {"targetingKey": "u2"}}`, "If-None-Match", etag); code != 200 || resp.Header.Get("ETag") == etag {
		t.Fatalf("changed: %d %q", code, resp.Header.Get("ETag"))
	}

	// A token that may read only flags.new-*: one flag in bulk, 403 for another.
	if err := c.PutRole(ctx, api.Role{Name: "checkout-flags", Grants: []api.Grant{{Verbs: []string{"read"}, Prefix: "flags.new-"}}}); err != nil {
		t.Fatal(err)
	}
	tok, err := c.CreateToken(ctx, api.TokenRequest{Name: "web", Subject: "web-app", Roles: []string{"checkout-flags"}})
	if err != nil {
		t.Fatal(err)
	}
	if code, body, _ = ofrep(t, base, tok.Token, `{"context": {}}`); code != 200 || len(body["flags"].([]any)) != 1 {
		t.Fatalf("bulk, one flag readable: %d %v", code, body)
	}
	if code, _, _ = ofrep(t, base+"/dark-mode", tok.Token, `{"context": {}}`); code != 403 {
		t.Fatalf("unreadable flag: %d", code)
	}
	req, _ = http.NewRequest(http.MethodPost, base+"/new-checkout", strings.NewReader(`{"context": {}}`))
	req.Header.Set("X-API-Key", tok.Token)
	req.Header.Set("Content-Type", "application/json")
	resp, err = hc.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("X-API-Key: %v %v", resp, err)
	}
	resp.Body.Close()
}
