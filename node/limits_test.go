package node_test

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"cfgcluster/api"
	"cfgcluster/node"
)

func healthy(t *testing.T, n *node.Node) {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(n.APIURL() + "/healthz")
	if err != nil {
		t.Fatalf("/healthz: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("/healthz: %d", resp.StatusCode)
	}
}

// closedWithin reports whether the server closes conn within d.
func closedWithin(conn net.Conn, d time.Duration) bool {
	conn.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, conn)
	var ne net.Error
	return !(errors.As(err, &ne) && ne.Timeout())
}

// Slow clients, clients that stop reading and floods of connections cannot
// hold the node: each is cut off, and /healthz answers throughout.
func TestHTTPLimits(t *testing.T) {
	n, c := startNode(t, "../examples/schema.yaml", func(cfg *node.Config) {
		cfg.ReadHeaderTimeout, cfg.ReadTimeout, cfg.EventWriteTimeout = 500*time.Millisecond, time.Second, time.Second
		cfg.MaxStreamsPerClient = 3
	})
	addr := strings.TrimPrefix(n.APIURL(), "http://")
	dial := func() net.Conn {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return conn
	}

	// A body that never finishes is cut off at the read timeout.
	slow := dial()
	fmt.Fprintf(slow, "PUT /v1/keys/log.level HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"va", c.Token)
	healthy(t, n)
	if !closedWithin(slow, 10*time.Second) {
		t.Fatal("a body that never finished held its connection")
	}

	// A flood of connections that send nothing: the node answers, and
	// closes them at the header timeout.
	var flood []net.Conn
	for range 300 {
		flood = append(flood, dial())
	}
	healthy(t, n)
	for _, conn := range flood {
		if !closedWithin(conn, 10*time.Second) {
			t.Fatal("an idle connection was never closed")
		}
	}

	// A stream that never reads is dropped once its socket is full.
	stuck := dial()
	fmt.Fprintf(stuck, "GET /v1/watch?prefix=billing. HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n", c.Token)
	if tc, ok := stuck.(*net.TCPConn); ok {
		tc.SetReadBuffer(4096)
	}
	waitStreams(t, n, 1)
	big := map[string]any{"blob": strings.Repeat("x", 900<<10)}
	for i := range 12 {
		big["n"] = i
		if _, err := c.Set(bg(t), "billing.limits", api.SetRequest{Value: big}); err != nil {
			t.Fatal(err)
		}
	}
	waitStreams(t, n, 0)
	healthy(t, n)

	// One client holds at most MaxStreamsPerClient streams.
	for range 3 {
		s := dial()
		fmt.Fprintf(s, "GET /v1/watch HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n", c.Token)
	}
	waitStreams(t, n, 3)
	status, body := raw(t, "GET", n.APIURL()+"/v1/watch", "", nil)
	if status != 429 || !strings.Contains(body, "streams") {
		t.Fatalf("a fourth stream: %d %s", status, body)
	}
	healthy(t, n)
}
