package main

import (
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v2"

	"cfgcluster/cfgerr"
)

func testApp() *cli.App {
	return &cli.App{
		Flags:    []cli.Flag{&cli.StringFlag{Name: "output", Aliases: []string{"o"}}, &cli.StringFlag{Name: "endpoint"}},
		Commands: []*cli.Command{setCommand(), rollbackCommand(), schemaCommand()},
	}
}

func TestInterspersedFlags(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"cfgadm set k v --comment c", "cfgadm set --comment c k v"},
		{"cfgadm set k v -m c --expect-revision 3", "cfgadm set -m c --expect-revision 3 k v"},
		{"cfgadm set k v -o json", "cfgadm -o json set k v"},
		{"cfgadm --endpoint e set k --comment=x v", "cfgadm --endpoint e set --comment=x k v"},
		{"cfgadm rollback --all --to 5", "cfgadm rollback --all --to 5"},
		{"cfgadm rollback k --to 5 --all", "cfgadm rollback --to 5 --all k"},
		{"cfgadm schema apply -f x.yaml -m why", "cfgadm schema apply -f x.yaml -m why"},
		{"cfgadm set k -- -5", "cfgadm set -- k -5"},
		{"cfgadm set -- k -5", "cfgadm set -- k -5"},
		{"cfgadm set tune.offset -5", "cfgadm set -- tune.offset -5"},
		{"cfgadm set k -5 --comment c", "cfgadm set --comment c -- k -5"},
		{"cfgadm set k -1h30m -m x", "cfgadm set -m x -- k -1h30m"},
		{"cfgadm set k -.5", "cfgadm set -- k -.5"},
		{"cfgadm unknown -x y", "cfgadm unknown -x y"},
	} {
		got := strings.Join(interspersed(testApp(), strings.Fields(tc.in)), " ")
		if got != tc.want {
			t.Errorf("%q → %q, want %q", tc.in, got, tc.want)
		}
	}
}

// Negative numbers are values wherever they stand, through urfave/cli's own
// parsing.
func TestNegativeValuesParse(t *testing.T) {
	for _, line := range []string{
		"cfgadm set tune.offset -5", "cfgadm set tune.offset -5 --comment c", "cfgadm set -m c tune.offset -5",
		"cfgadm set -- tune.offset -5", "cfgadm set tune.offset -- -5", "cfgadm -o json set tune.offset -5",
	} {
		app := testApp()
		var got []string
		var comment string
		app.Commands[0].Action = func(c *cli.Context) error {
			got, comment = c.Args().Slice(), c.String("comment")
			return nil
		}
		if err := app.Run(interspersed(app, strings.Fields(line))); err != nil {
			t.Errorf("%q: %v", line, err)
			continue
		}
		if !reflect.DeepEqual(got, []string{"tune.offset", "-5"}) || strings.Contains(line, " c") != (comment == "c") {
			t.Errorf("%q: args %q, comment %q", line, got, comment)
		}
	}
}

// cfgadm waits at least as long as the node it asks to wait, and a local
// file it cannot read is exit 1, not bad input.
func TestWaitTimeoutAndLocalErrors(t *testing.T) {
	app := testApp()
	var timeout time.Duration
	app.Commands[0].Action = func(c *cli.Context) error {
		timeout = client(c).HTTP.Timeout
		return nil
	}
	if err := app.Run(interspersed(app, strings.Fields("cfgadm set k v --wait --timeout 5m"))); err != nil || timeout < 5*time.Minute+10*time.Second {
		t.Fatalf("HTTP timeout %v for --timeout 5m: %v", timeout, err)
	}
	if _, err := readFile(filepath.Join(t.TempDir(), "missing.yaml")); exitCode(err) != 1 {
		t.Fatalf("a missing file: exit %d (%v)", exitCode(err), err)
	}
}

func TestExitCodes(t *testing.T) {
	for code, want := range map[cfgerr.Code]int{
		cfgerr.Invalid: 2, cfgerr.NotFound: 3, cfgerr.Conflict: 4, cfgerr.FailedPrecondition: 4,
		cfgerr.Unavailable: 5, cfgerr.TooMany: 5, cfgerr.Forbidden: 6, cfgerr.Internal: 1,
	} {
		if got := exitCode(cfgerr.Errorf(code, "k", "", "x")); got != want {
			t.Errorf("%s: exit %d, want %d", code, got, want)
		}
	}
	if got := exitCode(errors.New("flag provided but not defined: -x")); got != 2 {
		t.Errorf("usage error: exit %d", got)
	}
	if !reflect.DeepEqual(interspersed(testApp(), nil), []string(nil)) {
		t.Error("empty args")
	}
}
