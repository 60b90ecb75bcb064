package main

import (
	"context"
	"time"

	"github.com/urfave/cli/v2"

	"cfgcluster/api"
	"cfgcluster/cfgerr"
	"cfgcluster/version"
)

func versionCommand() *cli.Command {
	return &cli.Command{
		Name:  "version",
		Usage: "print cfgadm's version, and the node's, its etcd's and whether their APIs match (exit 5 if the node cannot be reached)",
		Action: func(c *cli.Context) error {
			return printVersion(c, true)
		},
	}
}

// versionReport is what version prints.
type versionReport struct {
	Client     string           `json:"client"`
	API        string           `json:"api"`
	Endpoint   string           `json:"endpoint"`
	Node       *api.VersionInfo `json:"node,omitempty"`
	Error      string           `json:"error,omitempty"`
	Compatible bool             `json:"compatible"`
}

// printVersion prints the client's version and, when the node answers, the
// node's build, its etcd's version and whether cfgadm speaks its API. With
// strict, a node that cannot be reached or speaks another API is an error.
func printVersion(c *cli.Context, strict bool) error {
	ctx, cancel := context.WithTimeout(c.Context, 5*time.Second)
	defer cancel()
	cl := client(c)
	r := versionReport{Client: version.Build(), API: version.API, Endpoint: cl.Endpoint}
	v, err := cl.Version(ctx)
	if err != nil {
		r.Error = err.Error()
	} else {
		r.Node, r.Compatible = v, v.API == version.API
	}
	if err := show(c, r, func(t *table) {
		t.note("cfgadm: %s (API %s)", r.Client, r.API)
		if v == nil {
			t.note("node:   unreachable at %s: %s", cl.Endpoint, r.Error)
			return
		}
		t.note("node:   %s %s (API %s) at %s", text(v.Name), v.Node, v.API, cl.Endpoint)
		t.note("etcd:   %s (cluster %s)", text(v.Etcd), text(v.ClusterID))
		if r.Compatible {
			t.note("API:    compatible")
		} else {
			t.note("API:    incompatible: cfgadm speaks %s, the node %s", version.API, v.API)
		}
	}); err != nil || !strict {
		return err
	}
	if v == nil {
		return cfgerr.Errorf(cfgerr.Unavailable, "", "endpoint", "no version from %s", cl.Endpoint)
	}
	if !r.Compatible {
		return cfgerr.Errorf(cfgerr.FailedPrecondition, "", "api", "cfgadm speaks API %s, the node %s: use a cfgadm of the node's version", version.API, v.API)
	}
	return nil
}
