package node

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"cfgcluster/auth"
	"cfgcluster/kv"
)

// EtcdCredentialFile is where a node keeps the password of its etcd user
// (auth.NodeUser): in its data directory, readable by its owner only.
func EtcdCredentialFile(dataDir string) string { return filepath.Join(dataDir, "etcd.credential") }

// nodeCredential returns the node's etcd credential: the one in its data
// directory; at first start the one cfgadm member add made for it
// (--etcd-credential-file), which it keeps, or a new one.
func (n *Node) nodeCredential() (auth.EtcdCredential, error) {
	path := EtcdCredentialFile(n.cfg.DataDir)
	cred, err := auth.ReadEtcdCredential(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return cred, err
	}
	if f := n.cfg.EtcdCredentialFile; f != "" {
		if cred, err = auth.ReadEtcdCredential(f); err != nil {
			return cred, fmt.Errorf("--etcd-credential-file: %w", err)
		}
		if cred.User != auth.NodeUser(n.cfg.Name) {
			return cred, fmt.Errorf("--etcd-credential-file %s is for etcd user %s, not this node's (%s): was the member added under another name?", f, cred.User, auth.NodeUser(n.cfg.Name))
		}
	} else {
		cred = auth.NewEtcdCredential(auth.NodeUser(n.cfg.Name))
	}
	return cred, cred.Write(path)
}

// enableEtcdAuth turns etcd's auth on for an embedded member. While it is
// off (a new cluster, or one made before cfgcluster turned it on), the node
// makes its etcd user, with the root role, and turns auth on once every
// member has one: the last member of a new cluster to start does it, and
// until then the cluster is as open as etcd is before `etcdctl auth enable`.
// Once it is on, the node's user logs in with its password.
func (n *Node) enableEtcdAuth(ctx context.Context, cc clientv3.Config, cred auth.EtcdCredential) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	c, err := clientv3.New(cc) // anonymous: allowed only while auth is off
	if err != nil {
		return fmt.Errorf("etcd client: %w", err)
	}
	defer c.Close()
	enabled := func() bool {
		st, err := c.AuthStatus(ctx)
		return err == nil && st.Enabled
	}
	st, err := c.AuthStatus(ctx)
	if err != nil {
		return fmt.Errorf("etcd auth status: %w", err)
	}
	if st.Enabled {
		return nil
	}
	// Another member may turn auth on at any step from here (once it has
	// found this node's user): then the anonymous client is refused, and
	// that is success.
	waiting, err := n.makeEtcdUser(ctx, c, cred)
	if err != nil {
		if enabled() {
			return nil
		}
		return err
	}
	if len(waiting) > 0 {
		n.log.Warn("etcd auth stays off until every member has started once", zap.Strings("waiting_for", waiting))
		return nil
	}
	if _, err := c.AuthEnable(ctx); err != nil && !enabled() {
		return fmt.Errorf("etcd auth enable: %w", err)
	}
	n.log.Info("etcd auth enabled: anonymous etcd clients are refused from now on")
	return nil
}

// makeEtcdUser makes the node's etcd user, with the root role, and returns
// the members that have no user yet (by name, or by ID if not started).
func (n *Node) makeEtcdUser(ctx context.Context, c *clientv3.Client, cred auth.EtcdCredential) ([]string, error) {
	if err := auth.EnsureEtcdRoot(ctx, c); err != nil {
		return nil, err
	}
	if err := auth.PutEtcdUser(ctx, c, cred, "root"); err != nil {
		return nil, err
	}
	ml, err := c.MemberList(ctx)
	if err != nil {
		return nil, fmt.Errorf("etcd member list: %w", err)
	}
	var waiting []string
	for _, m := range ml.Members {
		if m.Name == "" { // not started yet: it makes its user when it starts
			waiting = append(waiting, memberID(m.ID))
			continue
		}
		// A user counts once it has the root role: made, and granted it
		// (two requests: in between, the node could not work).
		u, err := c.UserGet(ctx, auth.NodeUser(m.Name))
		switch {
		case errors.Is(err, rpctypes.ErrUserNotFound) || err == nil && !slices.Contains(u.Roles, "root"):
			waiting = append(waiting, m.Name)
		case err != nil:
			return nil, fmt.Errorf("etcd user %s: %w", auth.NodeUser(m.Name), err)
		}
	}
	return waiting, nil
}

// checkEtcdAccess proves at start that the node's etcd user may read and
// write everything under its prefix (in external mode the operator made
// that user: docs/OPERATIONS.md, "etcd users and roles"). It sends one
// transaction whose condition never holds: etcd checks the permission of
// every operation in it, and runs none.
func checkEtcdAccess(ctx context.Context, c *clientv3.Client, layout kv.Layout, user string) error {
	p := layout.Prefix()
	end := clientv3.GetPrefixRangeEnd(p)
	never := clientv3.Compare(clientv3.CreateRevision(layout.LastChangeKey()), "<", 0)
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err := c.Txn(ctx).If(never).Then(
		clientv3.OpGet(p, clientv3.WithRange(end), clientv3.WithLimit(1)),
		clientv3.OpDelete(p, clientv3.WithRange(end))).Commit()
	switch {
	case errors.Is(err, rpctypes.ErrPermissionDenied):
		return fmt.Errorf("etcd user %q may not read and write every key under %s: grant it a role with readwrite on that prefix (etcdctl role grant-permission ROLE readwrite --prefix=true %s) or etcd's root role; docs/OPERATIONS.md, \"etcd users and roles\"", user, p, p)
	case errors.Is(err, rpctypes.ErrUserEmpty):
		return fmt.Errorf("etcd's auth is on and no etcd user was given: --etcd-user USER:PASSWORD (or --etcd-cert/--etcd-key)")
	case err != nil:
		return err
	}
	return nil
}
