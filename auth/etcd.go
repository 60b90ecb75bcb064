package auth

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"cfgcluster/cfgerr"
	"cfgcluster/kv"
)

// etcd's own access control (docs/DESIGN.md, "etcd itself"). Embedded
// members run with etcd auth on: each node is an etcd user of its own with
// etcd's root role, and each service account an etcd user whose role reads
// the client range and writes only its own instances.

// EtcdCredential is an etcd user and its password. On disk it is one line,
// "user:password", in a file only its owner may read.
type EtcdCredential struct {
	User, Password string
}

// NewEtcdCredential makes a credential for user with a random 256-bit password.
func NewEtcdCredential(user string) EtcdCredential {
	b := make([]byte, 32)
	rand.Read(b) // never fails (crypto/rand)
	return EtcdCredential{User: user, Password: base64.RawURLEncoding.EncodeToString(b)}
}

// ReadEtcdCredential reads a credential file.
func ReadEtcdCredential(path string) (EtcdCredential, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return EtcdCredential{}, err
	}
	user, pass, ok := strings.Cut(strings.TrimSpace(string(b)), ":")
	if !ok || user == "" || pass == "" {
		return EtcdCredential{}, fmt.Errorf("%s is not an etcd credential file: it holds one line, user:password", path)
	}
	return EtcdCredential{User: user, Password: pass}, nil
}

// Write writes the credential to path, mode 0600; it refuses to replace a file.
func (c EtcdCredential) Write(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(f, "%s:%s\n", c.User, c.Password)
	return errors.Join(err, f.Close())
}

// Config returns cfg with the credential's user and password set: what a
// service passes to clientv3.New.
func (c EtcdCredential) Config(cfg clientv3.Config) clientv3.Config {
	cfg.Username, cfg.Password = c.User, c.Password
	return cfg
}

// NodeUser is the etcd user of the node named name.
func NodeUser(name string) string { return "cfgnode." + name }

// PutEtcdUser creates the etcd user of cred with roles, or, if it exists,
// sets its password and grants them. It needs etcd's root role (or etcd
// auth off).
func PutEtcdUser(ctx context.Context, c *clientv3.Client, cred EtcdCredential, roles ...string) error {
	_, err := c.UserAdd(ctx, cred.User, cred.Password)
	if errors.Is(err, rpctypes.ErrUserAlreadyExist) {
		_, err = c.UserChangePassword(ctx, cred.User, cred.Password)
	}
	if err != nil {
		return fmt.Errorf("etcd user %s: %w", cred.User, err)
	}
	for _, r := range roles {
		if _, err := c.UserGrantRole(ctx, cred.User, r); err != nil {
			return fmt.Errorf("etcd user %s: grant role %s: %w", cred.User, r, err)
		}
	}
	return nil
}

// EnsureEtcdRoot creates what etcd needs before its auth can be enabled:
// the root role, and the root user with it. The root user has no password
// (it can log in only with a client certificate whose CN is root).
func EnsureEtcdRoot(ctx context.Context, c *clientv3.Client) error {
	if _, err := c.RoleAdd(ctx, "root"); err != nil && !errors.Is(err, rpctypes.ErrRoleAlreadyExist) {
		return fmt.Errorf("etcd role root: %w", err)
	}
	if _, err := c.UserAddWithOptions(ctx, "root", "", &clientv3.UserAddOptions{NoPassword: true}); err != nil && !errors.Is(err, rpctypes.ErrUserAlreadyExist) {
		return fmt.Errorf("etcd user root: %w", err)
	}
	if _, err := c.UserGrantRole(ctx, "root", "root"); err != nil {
		return fmt.Errorf("etcd user root: grant role root: %w", err)
	}
	return nil
}

// ServiceAccount is an etcd user for one service: it reads the client
// range and writes the instance registry of its own service, nothing else.
type ServiceAccount struct {
	Name    string    `json:"name"`    // the etcd user, and the service it registers as
	Role    string    `json:"role"`    // its etcd role
	Created time.Time `json:"created"` // when it was made
	Creator string    `json:"creator"` // who made it
}

// serviceRole is the etcd role of the service account name.
func serviceRole(name string) string { return "cfgcluster.service." + name }

// etcdGrant is one permission of an etcd role: perm on [key, end).
type etcdGrant struct {
	key, end string
	perm     clientv3.PermissionType
}

// serviceGrants are the etcd permissions of a service account: read the
// client range, read and write the service's own instances.
func serviceGrants(layout kv.Layout, service string) []etcdGrant {
	start, end := layout.ClientRange()
	own := layout.InstanceKey(service, "")
	return []etcdGrant{
		{key: start, end: end, perm: clientv3.PermissionType(clientv3.PermRead)},
		{key: own, end: clientv3.GetPrefixRangeEnd(own), perm: clientv3.PermissionType(clientv3.PermReadWrite)},
	}
}

// CreateServiceAccount makes the etcd user name, with a role of its own
// (serviceGrants) and a random password, records it with an audit record,
// and returns its credential, which is not kept anywhere.
func (s *Store) CreateServiceAccount(ctx context.Context, meta kv.Meta, name string) (EtcdCredential, *ServiceAccount, error) {
	if err := ValidName("name", name); err != nil {
		return EtcdCredential{}, nil, err
	}
	if name == "root" || strings.HasPrefix(name, "cfgnode.") {
		return EtcdCredential{}, nil, cfgerr.Errorf(cfgerr.Invalid, "", "name", "%q is reserved for etcd's root and the nodes' own users", name)
	}
	key := s.prefix + "service-accounts/" + name
	if resp, err := s.etcd.Get(ctx, key); err != nil {
		return EtcdCredential{}, nil, kv.EtcdError(err)
	} else if len(resp.Kvs) > 0 {
		return EtcdCredential{}, nil, cfgerr.Errorf(cfgerr.Conflict, "", "name", "a service account named %q exists: delete it first, or pick another name", name)
	}
	role := serviceRole(name)
	if _, err := s.etcd.RoleAdd(ctx, role); err != nil && !errors.Is(err, rpctypes.ErrRoleAlreadyExist) {
		return EtcdCredential{}, nil, etcdAuthError(err)
	}
	for _, g := range serviceGrants(s.kv.Layout(), name) {
		if _, err := s.etcd.RoleGrantPermission(ctx, role, g.key, g.end, g.perm); err != nil {
			return EtcdCredential{}, nil, etcdAuthError(err)
		}
	}
	// Never an existing etcd user: its password would change, and it would
	// gain the role (in external mode, the operator's users are there too).
	cred := NewEtcdCredential(name)
	if _, err := s.etcd.UserAdd(ctx, cred.User, cred.Password); errors.Is(err, rpctypes.ErrUserAlreadyExist) {
		return EtcdCredential{}, nil, cfgerr.Errorf(cfgerr.Conflict, "", "name", "etcd has a user named %q already, not a service account: pick another name", name)
	} else if err != nil {
		return EtcdCredential{}, nil, etcdAuthError(err)
	}
	if _, err := s.etcd.UserGrantRole(ctx, cred.User, role); err != nil {
		return EtcdCredential{}, nil, etcdAuthError(err)
	}
	sa := &ServiceAccount{Name: name, Role: role, Created: s.now().UTC(), Creator: meta.Actor}
	b, _ := json.Marshal(sa)
	meta.Action = kv.ActionAuth
	ops := append([]clientv3.Op{clientv3.OpPut(key, string(b))},
		s.kv.AuditOp(meta, []kv.Change{{Key: "auth/service-accounts/" + name, New: map[string]any{"role": role}}})...)
	if _, err := s.etcd.Txn(ctx).Then(ops...).Commit(); err != nil {
		return EtcdCredential{}, nil, kv.EtcdError(err)
	}
	return cred, sa, nil
}

// ServiceAccounts lists the service accounts.
func (s *Store) ServiceAccounts(ctx context.Context) ([]ServiceAccount, error) {
	resp, err := s.etcd.Get(ctx, s.prefix+"service-accounts/", clientv3.WithPrefix())
	if err != nil {
		return nil, kv.EtcdError(err)
	}
	out := []ServiceAccount{}
	for _, kv := range resp.Kvs {
		var sa ServiceAccount
		if json.Unmarshal(kv.Value, &sa) == nil {
			out = append(out, sa)
		}
	}
	return out, nil
}

// DeleteServiceAccount deletes the etcd user and role of a service
// account: etcd refuses its credential from then on.
func (s *Store) DeleteServiceAccount(ctx context.Context, meta kv.Meta, name string) error {
	if resp, err := s.etcd.Get(ctx, s.prefix+"service-accounts/"+name); err != nil {
		return kv.EtcdError(err)
	} else if len(resp.Kvs) == 0 {
		return cfgerr.Errorf(cfgerr.NotFound, "", "name", "no service account %q", name)
	}
	if _, err := s.etcd.UserDelete(ctx, name); err != nil && !errors.Is(err, rpctypes.ErrUserNotFound) {
		return etcdAuthError(err)
	}
	if _, err := s.etcd.RoleDelete(ctx, serviceRole(name)); err != nil && !errors.Is(err, rpctypes.ErrRoleNotFound) {
		return etcdAuthError(err)
	}
	return s.remove(ctx, meta, "service-accounts", name, "service account")
}

// etcdAuthError explains an etcd refusal of a user or role change: in
// external mode the node's etcd user may not be root.
func etcdAuthError(err error) error {
	if errors.Is(err, rpctypes.ErrPermissionDenied) || errors.Is(err, rpctypes.ErrUserEmpty) {
		return cfgerr.Errorf(cfgerr.Forbidden, "", "etcd", "etcd refused to change its users: the node's etcd user needs etcd's root role for this (docs/OPERATIONS.md, \"etcd users and roles\")")
	}
	return kv.EtcdError(err)
}
