package main

import (
	"errors"
	"reflect"
	"strings"
	"testing"

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
		{"cfgadm set k -- -5", "cfgadm set k -- -5"},
		{"cfgadm unknown -x y", "cfgadm unknown -x y"},
	} {
		got := strings.Join(interspersed(testApp(), strings.Fields(tc.in)), " ")
		if got != tc.want {
			t.Errorf("%q → %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestExitCodes(t *testing.T) {
	for code, want := range map[cfgerr.Code]int{
		cfgerr.Invalid: 2, cfgerr.NotFound: 3, cfgerr.Conflict: 4, cfgerr.FailedPrecondition: 4,
		cfgerr.Unavailable: 5, cfgerr.Forbidden: 6, cfgerr.Internal: 1,
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
