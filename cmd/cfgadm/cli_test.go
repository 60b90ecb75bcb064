package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v2"

	"cfgcluster/api"
	"cfgcluster/cfgerr"
)

// runApp runs cfgadm in-process with its output in a buffer.
func runApp(t *testing.T, args ...string) (string, error) {
	t.Helper()
	app := newApp()
	var out bytes.Buffer
	app.Writer = &out
	var unknown error
	app.CommandNotFound = func(c *cli.Context, name string) { unknown = unknownCommand(c, name) }
	err := app.Run(interspersed(app, append([]string{"cfgadm"}, args...)))
	if err == nil {
		err = unknown
	}
	return out.String(), err
}

func TestMistakesGetOneLineAndASuggestion(t *testing.T) {
	t.Setenv("CFGADM_CONFIG", filepath.Join(t.TempDir(), "none.yaml"))
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"sett", "k", "v"}, []string{`unknown command "sett"`, "did you mean set?"}},
		{[]string{"cluster", "statu"}, []string{`unknown command "statu"`, "did you mean status?", "cfgadm cluster --help"}},
		{[]string{"get", "--revison", "3", "k"}, []string{"-revison", "did you mean --revision?"}},
		{[]string{"maintenance", "on", "--scope", "x", "--reason", "r"}, []string{"needs --for", "how long the window lasts"}},
		{[]string{"maintenance", "on", "--scope", "x", "--reason", "r", "--for", "30"}, []string{`--for "30"`, "not a duration", "30m"}},
		{[]string{"maintenance", "on", "--scope", "x", "--reason", "r", "--for", "1m", "--at", "tomorrow"}, []string{`--at "tomorrow"`, "RFC 3339"}},
		{[]string{"-o", "xml", "list"}, []string{"-o must be", "jsonpath=TEMPLATE"}},
		{[]string{"-o", "jsonpath={.value", "list"}, []string{"-o jsonpath"}},
		{[]string{"completion", "tcsh"}, []string{"bash, zsh or fish"}},
	} {
		out, err := runApp(t, tc.args...)
		if err == nil || exitCode(err) != 2 {
			t.Errorf("%v: exit %d (%v), want 2", tc.args, exitCode(err), err)
			continue
		}
		msg := err.Error()
		if strings.Contains(msg, "\n") || out != "" {
			t.Errorf("%v: more than one line: %q, stdout %q", tc.args, msg, out)
		}
		for _, w := range tc.want {
			if !strings.Contains(msg, w) {
				t.Errorf("%v: %q lacks %q", tc.args, msg, w)
			}
		}
	}
}

// Without a terminal, a window over every service needs --scope global said.
func TestGlobalWindowNeedsSayingSo(t *testing.T) {
	_, err := runApp(t, "maintenance", "on", "--reason", "r", "--for", "1m", "--endpoint", "127.0.0.1:1")
	if err == nil || !strings.Contains(err.Error(), "--scope global") || exitCode(err) != 2 {
		t.Fatalf("no --scope: %v", err)
	}
	// Said: it goes on to the node (unreachable here: exit 5).
	_, err = runApp(t, "maintenance", "on", "--scope", "global", "--reason", "r", "--for", "1m", "--endpoint", "127.0.0.1:1")
	if exitCode(err) != 5 || !strings.Contains(err.Error(), "is cfgnode running") {
		t.Fatalf("--scope global: %v", err)
	}
}

func TestContexts(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cfgadm", "config.yaml")
	t.Setenv("CFGADM_CONFIG", path)
	t.Setenv("CFGADM_ENDPOINT", "")
	os.Unsetenv("CFGADM_ENDPOINT")
	token := filepath.Join(t.TempDir(), "token")
	os.WriteFile(token, []byte("s3cret\n"), 0o600)

	if _, err := runApp(t, "config", "use-context", "prod"); cfgerr.CodeOf(err) != cfgerr.NotFound {
		t.Fatalf("use of a missing context: %v", err)
	}
	if _, err := runApp(t, "config", "set-context", "local"); exitCode(err) != 2 {
		t.Fatalf("a new context without --endpoint: %v", err)
	}
	if _, err := runApp(t, "config", "set-context", "local", "--endpoint", "127.0.0.1:7380"); err != nil {
		t.Fatal(err)
	}
	if _, err := runApp(t, "config", "set-context", "prod", "--endpoint", "https://cfg.example:7380", "--token-file", token); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("config file mode: %v %v", st.Mode(), err)
	}
	out, err := runApp(t, "config", "get-contexts")
	if err != nil || !regexp.MustCompile(`(?m)^\*\s+local\s`).MatchString(out) || !strings.Contains(out, "token-file "+token) || strings.Contains(out, "s3cret") {
		t.Fatalf("get-contexts (the first context is current; tokens never shown):\n%s %v", out, err)
	}
	if _, err := runApp(t, "config", "use-context", "prod"); err != nil {
		t.Fatal(err)
	}
	out, _ = runApp(t, "config", "current-context")
	if out != "prod\n" {
		t.Fatalf("current-context: %q", out)
	}

	// Precedence: --endpoint, then CFGADM_ENDPOINT, then --context, then
	// the current context.
	endpoint := func(args ...string) (string, string) {
		app := newApp()
		var ep, tok string
		app.Commands[0].Action = func(c *cli.Context) error {
			cl := client(c)
			ep, tok = cl.Endpoint, cl.Token
			return nil
		}
		if err := app.Run(interspersed(app, append(append([]string{"cfgadm"}, args...), "get", "k"))); err != nil {
			t.Fatal(err)
		}
		return ep, tok
	}
	if ep, tok := endpoint(); ep != "https://cfg.example:7380" || tok != "s3cret" {
		t.Fatalf("current context: %s %q", ep, tok)
	}
	if ep, _ := endpoint("--context", "local"); ep != "http://127.0.0.1:7380" {
		t.Fatalf("--context local: %s", ep)
	}
	// flag eval's own --context is an evaluation context, not a config one.
	app := newApp()
	var ep, evalCtx string
	for _, cmd := range app.Commands {
		for _, sub := range cmd.Subcommands {
			if cmd.Name == "flag" && sub.Name == "eval" {
				sub.Action = func(c *cli.Context) error {
					ep, evalCtx = client(c).Endpoint, c.String("context")
					return nil
				}
			}
		}
	}
	if err := app.Run(interspersed(app, []string{"cfgadm", "flag", "eval", "f", "--context", `{"targetingKey": "u1"}`})); err != nil ||
		ep != "https://cfg.example:7380" || evalCtx != `{"targetingKey": "u1"}` {
		t.Fatalf("flag eval --context: endpoint %s, evaluation context %q, %v", ep, evalCtx, err)
	}
	t.Setenv("CFGADM_ENDPOINT", "127.0.0.1:9999")
	if ep, _ := endpoint(); ep != "http://127.0.0.1:9999" {
		t.Fatalf("CFGADM_ENDPOINT: %s", ep)
	}
	if ep, _ := endpoint("--endpoint", "http://10.0.0.1:7380"); ep != "http://10.0.0.1:7380" {
		t.Fatalf("--endpoint: %s", ep)
	}
	if _, err := runApp(t, "config", "delete-context", "prod"); err != nil {
		t.Fatal(err)
	}
	if out, _ := runApp(t, "config", "get-contexts"); strings.Contains(out, "prod") {
		t.Fatalf("after delete:\n%s", out)
	}
}

func TestLineDiff(t *testing.T) {
	got := lineDiff([]string{"- email", "- slack"}, []string{"- email", "- pager", "- slack"})
	want := []string{"  - email", "+ - pager", "  - slack"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("got %q", got)
	}
	got = lineDiff([]string{"a", "b", "c"}, []string{"a", "c", "d"})
	if strings.Join(got, "|") != "  a|- b|  c|+ d" {
		t.Fatalf("got %q", got)
	}
}

func TestTableCells(t *testing.T) {
	tb := &table{}
	tb.row("a\tb\nc", strings.Repeat("x", 100))
	if tb.rows[0][0] != "a b c" || len([]rune(tb.rows[0][1])) != 60 || !strings.HasSuffix(tb.rows[0][1], "…") {
		t.Fatalf("cells: %q", tb.rows[0])
	}
	wide := &table{wide: true}
	wide.row(strings.Repeat("x", 100))
	if len(wide.rows[0][0]) != 100 {
		t.Fatal("-o wide cut a cell")
	}
	if text("<redacted>") != "<redacted>" || text(map[string]any{"a": "<b>"}) != `{"a":"<b>"}` {
		t.Fatalf("HTML escaping: %s", text(map[string]any{"a": "<b>"}))
	}
}

func TestParseAt(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	if at, err := parseAt("+12h", now); err != nil || !at.Equal(now.Add(12*time.Hour)) {
		t.Fatalf("+12h: %v %v", at, err)
	}
	if at, err := parseAt("2026-12-01T02:00:00Z", now); err != nil || at.Hour() != 2 {
		t.Fatalf("RFC 3339: %v %v", at, err)
	}
	for _, bad := range []string{"+", "+-1h", "+soon", "tomorrow", "2026-12-01"} {
		if _, err := parseAt(bad, now); exitCode(err) != 2 || !strings.Contains(err.Error(), bad) {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

// A member added with an https peer URL is started with TLS on every hop,
// from the certificates cfgnode certs makes; a plain one with none.
func TestStartLineTLS(t *testing.T) {
	m := &api.MemberAdded{InitialCluster: "a=https://10.0.0.1:2380,d=https://10.0.0.4:2380", InitialClusterState: "existing"}
	line := startLine("d", "https://10.0.0.4:2380", "", "", "", "/etc/cfg/certs/", m)
	for _, want := range []string{"--listen-client-urls https://10.0.0.4:2379", "--peer-cert-file /etc/cfg/certs/d.pem",
		"--peer-key-file /etc/cfg/certs/d-key.pem", "--peer-trusted-ca-file /etc/cfg/certs/ca.pem", "--cert-file /etc/cfg/certs/d.pem",
		"--trusted-ca-file /etc/cfg/certs/ca.pem", "--initial-cluster-state existing"} {
		if !strings.Contains(line, want) {
			t.Errorf("no %q in\n%s", want, line)
		}
	}
	if plain := startLine("d", "http://10.0.0.4:2380", "", "", "", "./certs", m); strings.Contains(plain, "cert-file") {
		t.Errorf("TLS flags for an http peer:\n%s", plain)
	}
}
