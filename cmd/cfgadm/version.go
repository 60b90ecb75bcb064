package main

import (
	"context"
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

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

// printVersion prints the client's version and, when the node answers, the
// node's build, its etcd's version and whether cfgadm speaks its API. With
// strict, a node that cannot be reached or speaks another API is an error.
func printVersion(c *cli.Context, strict bool) error {
	out := stdout(c)
	fmt.Fprintf(out, "cfgadm: %s (API %s)\n", version.Build(), version.API)
	ctx, cancel := context.WithTimeout(c.Context, 5*time.Second)
	defer cancel()
	cl := client(c)
	v, err := cl.Version(ctx)
	if err != nil {
		fmt.Fprintf(out, "node:   %s unreachable: %v\n", cl.Endpoint, err)
		if strict {
			return cfgerr.Errorf(cfgerr.Unavailable, "", "endpoint", "no version from %s", cl.Endpoint)
		}
		return nil
	}
	fmt.Fprintf(out, "node:   %s (API %s) at %s\n", v.Node, v.API, cl.Endpoint)
	fmt.Fprintf(out, "etcd:   %s (cluster %s)\n", text(v.Etcd), text(v.ClusterID))
	if v.API != version.API {
		fmt.Fprintf(out, "API:    incompatible: cfgadm speaks %s, the node %s\n", version.API, v.API)
		if strict {
			return cfgerr.Errorf(cfgerr.FailedPrecondition, "", "api", "cfgadm speaks API %s, the node %s: use a cfgadm of the node's version", version.API, v.API)
		}
		return nil
	}
	fmt.Fprintln(out, "API:    compatible")
	return nil
}
