package main

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/dustin/go-humanize"
	"github.com/urfave/cli/v2"

	"cfgcluster/api"
)

func clusterCommand() *cli.Command {
	return &cli.Command{
		Name:  "cluster",
		Usage: "the etcd cluster under the nodes",
		Subcommands: []*cli.Command{{
			Name:  "status",
			Usage: "every member: leader, raft term and index, db size, health, version; and active alarms",
			Action: func(c *cli.Context) error {
				s, err := client(c).Cluster(c.Context)
				if err != nil {
					return err
				}
				return show(c, s, func(w io.Writer) {
					showMembers(w, s.Members)
					for _, a := range s.Alarms {
						row(w, "ALARM", a)
					}
				})
			},
		}},
	}
}

func showMembers(w io.Writer, ms []api.Member) {
	row(w, "ID", "NAME", "ROLE", "HEALTHY", "TERM", "INDEX", "DB SIZE", "VERSION", "CLIENT URLS", "ERROR")
	for _, m := range ms {
		role := "follower"
		switch {
		case m.Leader:
			role = "leader"
		case m.Learner:
			role = "learner"
		}
		row(w, m.ID, text(m.Name), role, m.Healthy, m.RaftTerm, m.RaftIndex, humanize.IBytes(uint64(m.DBSize)), text(m.Version),
			text(strings.Join(m.ClientURLs, ",")), text(m.Error))
	}
}

func memberCommand() *cli.Command {
	return &cli.Command{
		Name:  "member",
		Usage: "add, remove and list etcd members",
		Subcommands: []*cli.Command{
			{
				Name:      "add",
				Usage:     "add a member as a learner (promoted once caught up); prints the flags to start it with",
				ArgsUsage: "NAME PEER_URL",
				Action: func(c *cli.Context) error {
					if err := args(c, 2, "NAME PEER_URL"); err != nil {
						return err
					}
					m, err := client(c).AddMember(c.Context, api.MemberAddRequest{Name: c.Args().Get(0), PeerURL: c.Args().Get(1)})
					if err != nil {
						return err
					}
					return show(c, m, func(w io.Writer) {
						fmt.Fprintf(w, "added %s (%s) as a learner; start it with:\n", m.Member.Name, m.Member.ID)
						fmt.Fprintf(w, "  cfgnode --name %s --initial-advertise-peer-urls %s --listen-peer-urls %s --initial-cluster %s --initial-cluster-state %s\n",
							m.Member.Name, c.Args().Get(1), c.Args().Get(1), m.InitialCluster, m.InitialClusterState)
					})
				},
			},
			{
				Name:      "remove",
				Usage:     "remove a member, by id or name",
				ArgsUsage: "ID|NAME",
				Action: func(c *cli.Context) error {
					if err := args(c, 1, "ID|NAME"); err != nil {
						return err
					}
					return client(c).RemoveMember(c.Context, c.Args().First())
				},
			},
			{
				Name:  "list",
				Usage: "list the members",
				Action: func(c *cli.Context) error {
					s, err := client(c).Cluster(c.Context)
					if err != nil {
						return err
					}
					return show(c, s.Members, func(w io.Writer) { showMembers(w, s.Members) })
				},
			},
		},
	}
}

func snapshotCommand() *cli.Command {
	return &cli.Command{
		Name:  "snapshot",
		Usage: "etcd snapshots for backup (restore with cfgnode restore --from FILE)",
		Subcommands: []*cli.Command{{
			Name:      "save",
			Usage:     "save a snapshot of the node's member to FILE, and its SHA-256 to FILE.sha256",
			ArgsUsage: "FILE",
			Action: func(c *cli.Context) error {
				if err := args(c, 1, "FILE"); err != nil {
					return err
				}
				path := c.Args().First()
				tmp := path + ".part"
				// The snapshot holds every value: only its owner may read it.
				f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
				if err != nil {
					return localError(err)
				}
				sum, err := client(c).Snapshot(c.Context, f)
				if cerr := f.Close(); err == nil && cerr != nil {
					err = cerr
				}
				if err != nil {
					os.Remove(tmp)
					return err
				}
				if err := os.Rename(tmp, path); err != nil {
					return localError(err)
				}
				if err := os.WriteFile(path+".sha256", []byte(sum+"  "+path+"\n"), 0o644); err != nil {
					return localError(err)
				}
				fmt.Fprintf(c.App.Writer, "saved %s (sha256 %s)\n", path, sum)
				return nil
			},
		}},
	}
}

func defragCommand() *cli.Command {
	return &cli.Command{
		Name:  "defrag",
		Usage: "defragment every member's database in turn (reclaims space after compaction)",
		Action: func(c *cli.Context) error {
			r, err := client(c).Defrag(c.Context)
			if err != nil {
				return err
			}
			return show(c, r, func(w io.Writer) { showMembers(w, r.Members) })
		},
	}
}
