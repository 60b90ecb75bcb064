package integration

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// The README's five-minute tour, run with the real binaries.
func TestTour(t *testing.T) {
	schema, _ := filepath.Abs("../examples/schema.yaml")
	n := StartNode(t, NodeConfig{Flags: []string{"--schema", schema}})
	ctx := ctxT(t)
	adm := func(wantCode int, args ...string) string {
		t.Helper()
		out, errOut, code := n.Adm(ctx, args...)
		if code != wantCode {
			t.Fatalf("cfgadm %s: exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, wantCode, out, errOut)
		}
		return out + errOut
	}
	has := func(out string, wants ...string) {
		t.Helper()
		for _, w := range wants {
			if !strings.Contains(out, w) {
				t.Fatalf("output lacks %q:\n%s", w, out)
			}
		}
	}
	has(adm(0, "get", "session.idle_timeout"), "15m0s", "default")
	has(adm(0, "set", "session.idle_timeout", "20m", "--comment", "longer sessions"), "20m0s")
	has(adm(0, "get", "session.idle_timeout", "-o", "json"), `"value": "20m0s"`, `"actor": "admin@n1"`, `"comment": "longer sessions"`)
	has(adm(2, "set", "session.idle_timeout", "9h"), `key "session.idle_timeout"`, "must not exceed the absolute timeout")
	has(adm(2, "set", "taskqueue.max_workers", "lots"), `key "taskqueue.max_workers"`, "not a whole number")
	has(adm(2, "set", "taskqueue.max_workers", "1000"), "above the maximum 256")
	has(adm(2, "set", "log.level", "verbose"), "not one of [debug, info, warn, error]")
	has(adm(2, "set", "no.such.key", "1"), `key "no.such.key"`, "not in the schema")
	has(adm(3, "get", "no.such.key"), "not in the schema")
	has(adm(4, "set", "log.level", "warn", "--expect-revision", "1"), "expected revision 1")
	has(adm(2, "set", "only-one-arg"), "set takes KEY VALUE")
	has(adm(0, "list", "session."), "session.absolute_timeout", "session.idle_timeout")

	changes := filepath.Join(t.TempDir(), "changes.yaml")
	os.WriteFile(changes, []byte("comment: sale weekend\nset:\n  taskqueue.max_workers: 32\n  session.absolute_timeout: 12h\n  session.idle_timeout: 10h\n"), 0o644)
	has(adm(0, "apply", "-f", changes, "--dry-run"), "DRY RUN", "taskqueue.max_workers")
	if out := adm(0, "get", "taskqueue.max_workers"); !strings.Contains(out, "default") {
		t.Fatalf("dry run wrote: %s", out)
	}
	adm(0, "apply", "-f", changes)
	has(adm(0, "history", "session.idle_timeout"), "10h0m0s", "20m0s", "apply", "set")
	has(adm(0, "audit", "--key", "taskqueue.max_workers"), "sale weekend", "32")

	var hist struct {
		Entries []struct{ Revision int64 } `json:"entries"`
	}
	decodeJSON(t, adm(0, "history", "session.idle_timeout", "-o", "json"), &hist)
	first := hist.Entries[len(hist.Entries)-1].Revision
	has(adm(0, "diff", "session.idle_timeout", itoa(first), "0"), "20m0s", "10h0m0s")
	has(adm(0, "rollback", "session.idle_timeout", "--to", itoa(first)), "10h0m0s", "20m0s")
	has(adm(0, "rollback", "--all", "--to", itoa(first)), "taskqueue.max_workers")
	has(adm(0, "get", "taskqueue.max_workers"), "default")

	// Schema: validation lists every problem, apply refuses what does not fit.
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("keys:\n  session.idle_timeout: {type: duration, max: 1m}\n  x: {type: bogus}\n"), 0o644)
	has(adm(2, "schema", "validate", "-f", bad), `key "x"`, "unknown type")
	has(adm(0, "schema", "show"), "idle-within-absolute")
	has(adm(0, "-o", "yaml", "get", "log.level"), "value: info")
	has(adm(5, "--endpoint", "http://127.0.0.1:1", "get", "log.level"), "cannot reach")
}

// SIGTERM stops the node cleanly; a restart on the same data keeps every
// value and does not apply --schema again.
func TestRestartKeepsData(t *testing.T) {
	schema, _ := filepath.Abs("../examples/schema.yaml")
	n := StartNode(t, NodeConfig{Flags: []string{"--schema", schema}})
	ctx := ctxT(t)
	if _, e, code := n.Adm(ctx, "set", "log.level", "debug"); code != 0 {
		t.Fatal(e)
	}
	if err := n.Stop(); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	n.Start()
	out, _, _ := n.Adm(ctx, "get", "log.level")
	if !strings.Contains(out, "debug") {
		t.Fatalf("after restart: %s", out)
	}
	out, _, _ = n.Adm(ctx, "audit")
	if strings.Count(out, "--schema") != 1 {
		t.Fatalf("schema applied again on restart:\n%s", out)
	}
	log, _ := os.ReadFile(n.LogPath)
	if !strings.Contains(string(log), "shutting down") {
		t.Fatal("no clean shutdown in the log")
	}
}

// cfgadm watch prints each change as it is committed.
func TestAdmWatch(t *testing.T) {
	schema, _ := filepath.Abs("../examples/schema.yaml")
	n := StartNode(t, NodeConfig{Flags: []string{"--schema", schema}})
	ctx := ctxT(t)
	cmd := exec.CommandContext(ctx, filepath.Join(Binaries(t), "cfgadm"), "--endpoint", n.URL(), "watch", "session.")
	cmd.Env = n.AdmEnv()
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	// Keep writing until the stream (which starts asynchronously) shows one.
	for i := 0; ; i++ {
		if _, e, code := n.Adm(ctx, "set", "session.idle_timeout", fmt.Sprintf("%dm", 20+i)); code != 0 {
			t.Fatal(e)
		}
		select {
		case l := <-lines:
			if strings.HasPrefix(l, "TIME ") {
				continue // the header
			}
			if !strings.Contains(l, "session.idle_timeout") || !strings.Contains(l, "admin@n1") {
				t.Fatalf("watch printed %q", l)
			}
			return
		case <-time.After(200 * time.Millisecond):
			if i > 50 {
				t.Fatal("cfgadm watch printed nothing")
			}
		}
	}
}

// cfgadm watch outlives its node: when the node goes away it says so and
// reconnects from the last revision it printed (Last-Event-ID), so a change
// made meanwhile is printed once; when the node stays away past --retry-for
// it gives up with exit 5.
func TestAdmWatchReconnects(t *testing.T) {
	schema, _ := filepath.Abs("../examples/schema.yaml")
	n := StartNode(t, NodeConfig{Flags: []string{"--schema", schema}})
	ctx := ctxT(t)
	cmd := exec.CommandContext(ctx, filepath.Join(Binaries(t), "cfgadm"), "--endpoint", n.URL(), "--no-headers",
		"watch", "session.", "--since", "1", "--retry-for", "3s")
	cmd.Env = n.AdmEnv()
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		exited <- cmd.Wait()
	}()
	var printed []string // every line, to count each change's after the reconnect
	expect := func(value string) {
		t.Helper()
		deadline := time.After(30 * time.Second)
		for {
			select {
			case l := <-lines:
				printed = append(printed, l)
				if strings.Contains(l, value) {
					return
				}
			case <-deadline:
				t.Fatalf("watch never printed %s; stderr:\n%s", value, stderr.String())
			}
		}
	}
	if _, e, code := n.Adm(ctx, "set", "session.idle_timeout", "21m", "-m", "before"); code != 0 {
		t.Fatal(e)
	}
	expect("21m0s")
	if err := n.Stop(); err != nil {
		t.Fatal(err)
	}
	n.Start()
	if _, e, code := n.Adm(ctx, "set", "session.idle_timeout", "22m", "-m", "after the restart"); code != 0 {
		t.Fatal(e)
	}
	expect("22m0s")
	// stderr is copied from a pipe: its lines may trail stdout's.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		s := stderr.String()
		if strings.Contains(s, "lost the stream") && strings.Contains(s, "reconnected") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("watch did not say it reconnected:\n%s", s)
		}
	}
	// Gone for good: it gives up, exit 5, naming the last revision.
	if err := n.Stop(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 5 || !strings.Contains(stderr.String(), "gave up after 3s") {
			t.Fatalf("watch with its node gone: %v\n%s", err, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("watch did not give up; stderr:\n%s", stderr.String())
	}
	// Nothing printed twice: each change once, though the stream resumed.
	for l := range lines {
		printed = append(printed, l)
	}
	for _, change := range []string{"→ 21m0s", "→ 22m0s"} {
		n := 0
		for _, l := range printed {
			if strings.Contains(l, change) {
				n++
			}
		}
		if n != 1 {
			t.Fatalf("the change %q printed %d times:\n%s", change, n, strings.Join(printed, "\n"))
		}
	}
}

// syncBuffer is a bytes.Buffer safe for a process's writes and a test's reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
