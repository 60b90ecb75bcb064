package main

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/urfave/cli/v2"

	"cfgcluster/api"
	"cfgcluster/auth"
	"cfgcluster/cfgerr"
)

func clusterCommand() *cli.Command {
	return &cli.Command{
		Name:  "cluster",
		Usage: "the etcd cluster under the nodes",
		Subcommands: []*cli.Command{{
			Name:  "status",
			Usage: "every member: leader, raft term and index, db size, health, version; and active alarms (exit 5 if a member is unhealthy or an alarm is raised)",
			Action: func(c *cli.Context) error {
				s, err := client(c).Cluster(c.Context)
				if err != nil {
					return err
				}
				if err := show(c, s, func(t *table) {
					showMembers(t, s.Members)
					for _, a := range s.Alarms {
						t.note("ALARM: %s", a)
					}
				}); err != nil {
					return err
				}
				return unhealthy(s)
			},
		}},
	}
}

// unhealthy is an error (exit 5, as etcdctl endpoint health exits non-zero)
// naming every unhealthy member and alarm.
func unhealthy(s *api.ClusterStatus) error {
	var bad []string
	for _, m := range s.Members {
		if !m.Healthy {
			bad = append(bad, fmt.Sprintf("member %s (%s) is unhealthy: %s", m.Name, m.ID, m.Error))
		}
	}
	for _, a := range s.Alarms {
		bad = append(bad, "alarm "+a)
	}
	if len(bad) == 0 {
		return nil
	}
	return cfgerr.Errorf(cfgerr.Unavailable, "", "cluster", "%s", strings.Join(bad, "; "))
}

func showMembers(t *table, ms []api.Member) {
	t.header("ID", "NAME", "ROLE", "HEALTHY", "TERM", "INDEX", "DB SIZE", "VERSION", "CLIENT URLS", "ERROR")
	for _, m := range ms {
		role := "follower"
		switch {
		case m.Leader:
			role = "leader"
		case m.Learner:
			role = "learner"
		}
		t.row(m.ID, text(m.Name), role, m.Healthy, m.RaftTerm, m.RaftIndex, humanize.IBytes(uint64(m.DBSize)), text(m.Version),
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
				Usage:     "add a member as a learner (promoted once caught up); prints the command that starts it",
				ArgsUsage: "NAME PEER_URL",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "client-url", Usage: "the new member's etcd client URL (default: the peer URL's host, its port - 1)"},
					&cli.StringFlag{Name: "api-addr", Usage: "the new node's API address (default: the peer URL's host, port 7380; 7380+i for scripts/cluster.sh's peer port 2380+10i)"},
					&cli.StringFlag{Name: "data-dir", Usage: "the new member's data folder (default ./cfgnode-data-NAME)"},
					&cli.StringFlag{Name: "certs-dir", Value: "./certs", Usage: "for an https peer URL: where the new node's NAME.pem, NAME-key.pem and ca.pem are (as cfgnode certs --dir makes them)"},
					&cli.StringFlag{Name: "credential-file", Usage: "where to write the new member's etcd credential (mode 0600; default ./NAME.etcd-credential): copy it to the new node's machine"},
					&cli.DurationFlag{Name: "retry-for", Value: 30 * time.Second, Usage: "how long to retry while the cluster settles after a start"},
				},
				Action: func(c *cli.Context) error {
					if err := args(c, 2, "NAME PEER_URL"); err != nil {
						return err
					}
					name, peer := c.Args().Get(0), c.Args().Get(1)
					credFile := c.String("credential-file")
					if credFile == "" {
						credFile = "./" + name + ".etcd-credential"
					}
					if _, err := os.Stat(credFile); err == nil {
						return fmt.Errorf("%s exists: remove it, or give --credential-file", credFile)
					}
					keyringFile := "./" + name + ".keyring"
					if _, err := os.Stat(keyringFile); err == nil {
						return fmt.Errorf("%s exists: remove it first", keyringFile)
					}
					req := api.MemberAddRequest{Name: name, PeerURL: peer}
					cl := client(c)
					deadline := time.Now().Add(c.Duration("retry-for"))
					var m *api.MemberAdded
					var err error
					for {
						m, err = cl.AddMember(c.Context, req)
						// etcd adds a member only once every member has been
						// connected for a while (5 s after a start).
						if cfgerr.CodeOf(err) != cfgerr.Unavailable || time.Now().After(deadline) || c.Context.Err() != nil {
							break
						}
						fmt.Fprintln(os.Stderr, "cfgadm: the cluster is settling; retrying…")
						time.Sleep(time.Second)
					}
					if err != nil {
						return err
					}
					// The password is shown nowhere: it goes to a file only its
					// owner may read, which the new node is started with.
					if err := (auth.EtcdCredential{User: m.EtcdUser, Password: m.EtcdPassword}).Write(credFile); err != nil {
						return fmt.Errorf("member %s added, but its etcd credential could not be written (remove the member and add it again): %w", name, err)
					}
					m.EtcdPassword = ""
					start := startCommand(c, name, peer, m) + " --etcd-credential-file " + credFile
					if len(m.Keyring) > 0 {
						// The cluster's key-encryption keys, which the new
						// node needs to seal and open sensitive values.
						if err := os.WriteFile(keyringFile, m.Keyring, 0o600); err != nil {
							return fmt.Errorf("member %s added, but the encryption keyring could not be written: %w", name, err)
						}
						m.Keyring = nil
						start += " --encryption-keyring " + keyringFile
					}
					return show(c, m, func(t *table) {
						t.note("added %s (%s) as a learner; its etcd credential is in %s; start it with:", m.Member.Name, m.Member.ID, credFile)
						t.note("  %s", start)
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
					if err := client(c).RemoveMember(c.Context, c.Args().First()); err != nil {
						return err
					}
					fmt.Fprintf(stdout(c), "removed member %s; its node exits on its own\n", c.Args().First())
					return nil
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
					return show(c, s.Members, func(t *table) { showMembers(t, s.Members) })
				},
			},
		},
	}
}

// startCommand is a complete, runnable cfgnode command for a member just
// added: every address it needs, and the cluster it joins.
func startCommand(c *cli.Context, name, peer string, m *api.MemberAdded) string {
	return startLine(name, peer, c.String("client-url"), c.String("api-addr"), c.String("data-dir"), c.String("certs-dir"), m)
}

// startLine is the cfgnode command that starts a member added as name.
func startLine(name, peer, clientURL, apiAddr, dataDir, certsDir string, m *api.MemberAdded) string {
	u, _ := url.Parse(peer) // the node validated it
	host, port := u.Hostname(), u.Port()
	p, _ := strconv.Atoi(port)
	if clientURL == "" {
		clientURL = u.Scheme + "://" + net.JoinHostPort(host, strconv.Itoa(p-1))
	}
	if apiAddr == "" {
		apiPort := 7380
		if p >= 2380 && (p-2380)%10 == 0 && p < 2480 {
			apiPort += (p - 2380) / 10 // scripts/cluster.sh's layout
		}
		apiAddr = net.JoinHostPort(host, strconv.Itoa(apiPort))
	}
	if dataDir == "" {
		dataDir = "./cfgnode-data-" + name
	}
	cmd := fmt.Sprintf("cfgnode --name %s --data-dir %s --listen-client-urls %s --advertise-client-urls %s --listen-peer-urls %s --initial-advertise-peer-urls %s --api-addr %s --initial-cluster %s --initial-cluster-state %s",
		name, dataDir, clientURL, clientURL, peer, peer, apiAddr, m.InitialCluster, m.InitialClusterState)
	if u.Scheme == "https" {
		// TLS on every hop, as the other members have it: the API, etcd's
		// client port and its peers, with the new node's certificate.
		d := strings.TrimSuffix(certsDir, "/")
		cert, key, ca := d+"/"+name+".pem", d+"/"+name+"-key.pem", d+"/ca.pem"
		cmd += fmt.Sprintf(" --cert-file %s --key-file %s --trusted-ca-file %s --peer-cert-file %s --peer-key-file %s --peer-trusted-ca-file %s --peer-client-cert-auth",
			cert, key, ca, cert, key, ca)
	}
	return cmd
}

func snapshotCommand() *cli.Command {
	return &cli.Command{
		Name:  "snapshot",
		Usage: "etcd snapshots for backup (restore with cfgnode restore --from FILE)",
		Subcommands: []*cli.Command{{
			Name:      "save",
			Usage:     "save a snapshot of the node's member to FILE (mode 0600: it holds every value), and its SHA-256 to FILE.sha256",
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
				size := "?"
				if st, err := os.Stat(path); err == nil {
					size = humanize.IBytes(uint64(st.Size()))
				}
				fmt.Fprintf(stdout(c), "saved %s (%s, sha256 %s); restore with: cfgnode restore --from %s --data-dir DIR ...\n", path, size, sum, path)
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
			var failed []string
			for _, m := range r.Members {
				if m.Error != "" {
					failed = append(failed, m.Name+": "+m.Error)
				}
			}
			if err := show(c, r, func(t *table) {
				t.note("defragmented %d of %d members:", len(r.Members)-len(failed), len(r.Members))
				showMembers(t, r.Members)
			}); err != nil {
				return err
			}
			if len(failed) > 0 {
				return cfgerr.Errorf(cfgerr.Unavailable, "", "defrag", "%s", strings.Join(failed, "; "))
			}
			return nil
		},
	}
}
