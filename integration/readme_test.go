package integration

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The README's command blocks are a test: its node command, the tour, the
// maintenance section and the cluster section run as written, in order, in
// one bash session on a copy of the repository, on the README's own
// (default) ports. A comment's "exit N" is the exit code the command must
// have (0 otherwise), and every "quoted" word in it must be in what the
// command prints. Commands that run until stopped (go run, cfgadm watch)
// run in the background until what their comment promises has appeared;
// they are stopped (as Ctrl-C would) before the cluster section, which
// needs their ports.
func TestReadme(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	sections := readmeSections(string(readme))
	for _, name := range []string{"The two commands", "A five-minute tour", "Tokens and roles", "Feature flags", "Maintenance windows, instances and rollouts", "A cluster"} {
		if len(sections[name]) == 0 {
			t.Fatalf("README.md has no command block under %q", name)
		}
	}
	// The README's ports: the node's defaults, scripts/cluster.sh's three
	// members and a fourth peer, the example service.
	for _, port := range []int{7380, 7381, 7382, 2379, 2380, 2389, 2390, 2399, 2400, 2410, 8080} {
		if ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err != nil {
			t.Fatalf("the README test needs 127.0.0.1:%d, which is in use (a cfgnode or cluster of yours? scripts/cluster.sh down): %v", port, err)
		} else {
			ln.Close()
		}
	}
	root := copyRepo(t)
	sh := startShell(t, root)

	node := sections["The two commands"]
	if node[0].text != "go run ./cmd/cfgnode --schema examples/schema.yaml" || node[1].text != "scripts/test.sh" {
		t.Fatalf("the two commands changed: %q, %q: update this test", node[0].text, node[1].text)
	}
	sh.background(node[0])
	waitReady(t, sh, node[0], "http://127.0.0.1:7380/readyz")
	// node[1] is this test suite: not run from inside itself.

	for _, name := range []string{"A five-minute tour", "Tokens and roles", "Feature flags", "Maintenance windows, instances and rollouts"} {
		for _, c := range sections[name] {
			sh.run(c)
		}
	}
	sh.stopBackground() // Ctrl-C: the cluster takes the node's ports
	for _, c := range sections["A cluster"] {
		sh.run(c)
	}
}

// A readmeCommand is one command of a block, with what its comment states.
type readmeCommand struct {
	text   string   // as written (a heredoc whole)
	line   int      // in README.md
	exit   int      // "exit N" in the comment; 0 otherwise
	expect []string // the comment's quoted words
}

var (
	exitComment   = regexp.MustCompile(`^exit (\d+)`)
	quotedComment = regexp.MustCompile(`"([^"]+)"`)
	heredocStart  = regexp.MustCompile(`<<-?'?([A-Z]+)'?`)
)

// readmeSections returns the commands of the indented code blocks under
// each "## " heading.
func readmeSections(doc string) map[string][]readmeCommand {
	out := map[string][]readmeCommand{}
	section := ""
	lines := strings.Split(doc, "\n")
	fenced := false
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		switch {
		case strings.HasPrefix(l, "```"):
			fenced = !fenced
			continue
		case fenced:
			continue
		case strings.HasPrefix(l, "## "):
			section = strings.TrimPrefix(l, "## ")
			continue
		case !strings.HasPrefix(l, "    "):
			continue
		}
		code := strings.TrimPrefix(l, "    ")
		if strings.HasPrefix(strings.TrimSpace(code), "#") || strings.TrimSpace(code) == "" {
			continue // a comment continuing the one above
		}
		cmd, comment := splitComment(code)
		rc := readmeCommand{text: cmd, line: i + 1}
		if m := heredocStart.FindStringSubmatch(cmd); m != nil {
			for i+1 < len(lines) {
				i++
				body := strings.TrimPrefix(lines[i], "    ")
				rc.text += "\n" + body
				if body == m[1] {
					break
				}
			}
		}
		if m := exitComment.FindStringSubmatch(comment); m != nil {
			rc.exit, _ = strconv.Atoi(m[1])
		}
		for _, m := range quotedComment.FindAllStringSubmatch(comment, -1) {
			rc.expect = append(rc.expect, m[1])
		}
		out[section] = append(out[section], rc)
	}
	return out
}

// splitComment splits a shell line at its comment: a # after whitespace,
// outside quotes.
func splitComment(line string) (cmd, comment string) {
	var quote rune
	for i, r := range line {
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			}
		case r == '\'' || r == '"':
			quote = r
		case r == '#' && i > 0 && (line[i-1] == ' ' || line[i-1] == '\t'):
			return strings.TrimSpace(line[:i]), strings.TrimSpace(line[i+1:])
		}
	}
	return strings.TrimSpace(line), ""
}

// copyRepo copies the repository's files (tracked, and new ones not
// ignored) to a temporary folder, so the README's ./cluster, bin/ and
// backup.db never touch the working tree.
func copyRepo(t *testing.T) string {
	t.Helper()
	src, _ := filepath.Abs("..")
	out, err := exec.Command("git", "-C", src, "ls-files", "-co", "--exclude-standard").Output()
	if err != nil {
		t.Fatalf("git ls-files: %v", err)
	}
	dst := t.TempDir()
	for _, f := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		from := filepath.Join(src, f)
		st, err := os.Stat(from)
		if err != nil || st.IsDir() {
			continue // deleted in the working tree
		}
		data, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		to := filepath.Join(dst, f)
		os.MkdirAll(filepath.Dir(to), 0o755)
		if err := os.WriteFile(to, data, st.Mode().Perm()); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// shell is one bash session that runs the README's commands in order, as a
// person would type them: variables and exports carry over.
type shell struct {
	t      *testing.T
	root   string
	dir    string // scripts and outputs
	in     io.WriteCloser
	out    *bufio.Reader
	cmd    *exec.Cmd
	n      int
	groups []int // background process groups
}

func startShell(t *testing.T, root string) *shell {
	t.Helper()
	home := t.TempDir()
	env := []string{"HOME=" + home, "PATH=" + os.Getenv("PATH"), "NO_COLOR=1", "LANG=C.UTF-8", "USER=readme"}
	// The Go caches stay where they are (a cold build takes minutes).
	for _, v := range []string{"GOCACHE", "GOMODCACHE", "GOPATH", "GOFLAGS", "GOPROXY", "GOTOOLCHAIN", "TMPDIR"} {
		val := os.Getenv(v)
		if val == "" {
			if o, err := exec.Command("go", "env", v).Output(); err == nil {
				val = strings.TrimSpace(string(o))
			}
		}
		if val != "" {
			env = append(env, v+"="+val)
		}
	}
	sh := &shell{t: t, root: root, dir: t.TempDir()}
	sh.cmd = exec.Command("bash", "--norc", "--noprofile")
	sh.cmd.Dir, sh.cmd.Env = root, env
	sh.cmd.Stderr = os.Stderr
	sh.in, _ = sh.cmd.StdinPipe()
	stdout, _ := sh.cmd.StdoutPipe()
	sh.out = bufio.NewReader(stdout)
	if err := sh.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sh.stopBackground()
		// Whatever the README left running on failure.
		exec.Command("bash", "-c", "cd "+root+" && scripts/cluster.sh down >/dev/null 2>&1").Run()
		sh.in.Close()
		sh.cmd.Wait()
	})
	// Job control: each background command is a process group of its own.
	sh.send("set -m\necho @@READY\n", "@@READY")
	return sh
}

// send writes script to the shell and reads its output up to the marker
// line, returning the lines before it.
func (sh *shell) send(script, marker string) []string {
	sh.t.Helper()
	if _, err := io.WriteString(sh.in, script); err != nil {
		sh.t.Fatalf("shell: %v", err)
	}
	var lines []string
	for {
		l, err := sh.out.ReadString('\n')
		if err != nil {
			sh.t.Fatalf("shell ended: %v (after %q)", err, lines)
		}
		l = strings.TrimSuffix(l, "\n")
		if strings.HasPrefix(l, marker) {
			return append(lines, l)
		}
		lines = append(lines, l)
	}
}

func (sh *shell) script(c readmeCommand) (path, out string) {
	sh.n++
	path = filepath.Join(sh.dir, fmt.Sprintf("cmd-%d.sh", sh.n))
	out = filepath.Join(sh.dir, fmt.Sprintf("out-%d", sh.n))
	if err := os.WriteFile(path, []byte(c.text+"\n"), 0o644); err != nil {
		sh.t.Fatal(err)
	}
	return path, out
}

// run runs a command and checks its exit code and output; a command that
// runs until stopped goes to the background.
func (sh *shell) run(c readmeCommand) {
	sh.t.Helper()
	if strings.HasPrefix(c.text, "go run ") || strings.HasPrefix(c.text, "cfgadm watch") {
		sh.background(c)
		sh.waitOutput(c, 2*time.Minute)
		return
	}
	path, outPath := sh.script(c)
	start := time.Now()
	lines := sh.send(fmt.Sprintf("source %s >%s 2>&1 </dev/null; echo \"@@EXIT $?\"\n", path, outPath), "@@EXIT ")
	code, _ := strconv.Atoi(strings.TrimPrefix(lines[len(lines)-1], "@@EXIT "))
	out, _ := os.ReadFile(outPath)
	sh.t.Logf("README.md:%d (%s): %s → exit %d", c.line, time.Since(start).Round(time.Millisecond), c.text, code)
	if code != c.exit {
		sh.t.Fatalf("README.md:%d: %s\nexit %d, the README says %d; it printed:\n%s", c.line, c.text, code, c.exit, out)
	}
	for _, w := range c.expect {
		if !strings.Contains(string(out), w) {
			sh.t.Fatalf("README.md:%d: %s\nprinted no %q; it printed:\n%s", c.line, c.text, w, out)
		}
	}
}

// background starts a command in its own process group.
func (sh *shell) background(c readmeCommand) {
	sh.t.Helper()
	path, outPath := sh.script(c)
	lines := sh.send(fmt.Sprintf("( source %s ) >%s 2>&1 </dev/null &\necho \"@@BG $!\"\n", path, outPath), "@@BG ")
	pid, _ := strconv.Atoi(strings.TrimPrefix(lines[len(lines)-1], "@@BG "))
	sh.groups = append(sh.groups, pid)
	sh.t.Logf("README.md:%d: %s → in the background (process group %d)", c.line, c.text, pid)
}

// waitOutput waits until the last background command has printed what its
// comment promises, failing if it exits first.
func (sh *shell) waitOutput(c readmeCommand, within time.Duration) {
	sh.t.Helper()
	outPath := filepath.Join(sh.dir, fmt.Sprintf("out-%d", sh.n))
	pid := sh.groups[len(sh.groups)-1]
	deadline := time.Now().Add(within)
	for {
		out, _ := os.ReadFile(outPath)
		missing := ""
		for _, w := range c.expect {
			if !strings.Contains(string(out), w) {
				missing = w
				break
			}
		}
		if missing == "" {
			return
		}
		if syscall.Kill(pid, 0) != nil {
			sh.t.Fatalf("README.md:%d: %s\nexited before printing %q; it printed:\n%s", c.line, c.text, missing, out)
		}
		if time.Now().After(deadline) {
			sh.t.Fatalf("README.md:%d: %s\nprinted no %q in %s; it printed:\n%s", c.line, c.text, missing, within, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitReady waits for the README's node to answer ready.
func waitReady(t *testing.T, sh *shell, c readmeCommand, url string) {
	t.Helper()
	pid := sh.groups[len(sh.groups)-1]
	deadline := time.Now().Add(3 * time.Minute) // go run builds cfgnode first
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if syscall.Kill(pid, 0) != nil || time.Now().After(deadline) {
			out, _ := os.ReadFile(filepath.Join(sh.dir, fmt.Sprintf("out-%d", sh.n)))
			t.Fatalf("README.md:%d: %s\nnever became ready at %s (%v); it printed:\n%s", c.line, c.text, url, err, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stopBackground interrupts every background command, as Ctrl-C would, and
// waits for each to exit (killing what is left after 30 s).
func (sh *shell) stopBackground() {
	for _, pg := range sh.groups {
		syscall.Kill(-pg, syscall.SIGINT)
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, pg := range sh.groups {
		for syscall.Kill(-pg, 0) == nil {
			if time.Now().After(deadline) {
				syscall.Kill(-pg, syscall.SIGKILL)
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	sh.groups = nil
}
