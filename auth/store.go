package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/metadata"

	"cfgcluster/cfgerr"
	"cfgcluster/kv"
)

// Store keeps every token and role of the cluster in memory, current
// through one etcd watch of the auth range, and writes them through etcd
// with an audit record in the same transaction.
type Store struct {
	etcd   *clientv3.Client
	kv     *kv.Store
	prefix string // the auth range
	log    *zap.Logger
	now    func() time.Time

	mu     sync.RWMutex
	tokens map[string]*Token
	roles  map[string]Role
	rev    int64
	ready  chan struct{} // closed after the first list

	stop context.CancelFunc
	done chan struct{}
}

// NewStore starts following the auth range; Close stops it.
func NewStore(etcd *clientv3.Client, store *kv.Store, log *zap.Logger) *Store {
	ctx, cancel := context.WithCancel(context.Background())
	s := &Store{etcd: etcd, kv: store, prefix: store.Layout().AuthPrefix(), log: log, now: time.Now,
		tokens: map[string]*Token{}, roles: map[string]Role{}, ready: make(chan struct{}), stop: cancel, done: make(chan struct{})}
	go s.follow(ctx)
	return s
}

// Close stops the watch and waits for it.
func (s *Store) Close() {
	s.stop()
	<-s.done
}

// WaitReady waits until the first list has been applied.
func (s *Store) WaitReady(ctx context.Context) error {
	select {
	case <-s.ready:
		return nil
	case <-ctx.Done():
		return cfgerr.Errorf(cfgerr.Unavailable, "", "auth", "the tokens were not read in time: %v", ctx.Err())
	}
}

// follow lists the auth range, then watches it from that revision on; it
// lists again after any watch failure (a compaction among them). A watch
// that goes quiet is not trusted: every second the store asks etcd for a
// progress notice on it, and a watch that answered nothing (no event, no
// notice) for watchSilence is replaced, on a gRPC stream of its own. etcd's
// watches with auth on have been seen to stall for good (etcd issues 12385
// and 16112); revocations must still reach every node within a second or
// so.
func (s *Store) follow(ctx context.Context) {
	defer close(s.done)
	once := sync.Once{}
	for attempt := 0; ctx.Err() == nil; attempt++ {
		if err := s.list(ctx); err != nil {
			s.log.Warn("reading tokens and roles", zap.Error(err))
			sleep(ctx, time.Second)
			continue
		}
		once.Do(func() { close(s.ready) })
		// From the listed revision itself: etcd answers no progress request
		// of a watch from a revision it has not reached, so on an idle
		// cluster a watch from the next one went silent and was replaced
		// every watchSilence. Its events, if any come again, are skipped.
		s.mu.RLock()
		from := s.rev
		s.mu.RUnlock()
		// Its own metadata puts the watch on a gRPC stream of its own: a
		// replacement never joins a stalled stream.
		wctx, cancel := context.WithCancel(metadata.AppendToOutgoingContext(clientv3.WithRequireLeader(ctx),
			"cfgcluster-auth-watch", strconv.Itoa(attempt)))
		if err := s.watch(wctx, from); err != nil && ctx.Err() == nil {
			s.log.Warn("the watch of tokens and roles stopped; listing them again", zap.Error(err))
		}
		cancel()
		sleep(ctx, 100*time.Millisecond)
	}
}

// watchSilence is how long a watch of the auth range may answer nothing,
// though asked for progress every second, before it is replaced.
const watchSilence = 3 * time.Second

// watch applies the auth range's changes from revision from until the watch
// fails or goes silent.
func (s *Store) watch(ctx context.Context, from int64) error {
	ch := s.etcd.Watch(ctx, s.prefix, clientv3.WithPrefix(), clientv3.WithRev(from), clientv3.WithProgressNotify())
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	heard := time.Now()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
			if time.Since(heard) > watchSilence {
				return fmt.Errorf("no answer for %v", time.Since(heard).Round(time.Millisecond))
			}
			s.etcd.RequestProgress(ctx) // answered on this watch's stream; a failure shows as silence
		case resp, ok := <-ch:
			if !ok {
				return errors.New("closed")
			}
			if err := resp.Err(); err != nil {
				return err
			}
			heard = time.Now()
			s.mu.Lock()
			for _, ev := range resp.Events {
				if ev.Kv.ModRevision > s.rev { // a list may have read past it
					s.applyLocked(ev.Kv, ev.Type == clientv3.EventTypeDelete)
				}
			}
			s.rev = max(s.rev, resp.Header.Revision)
			s.mu.Unlock()
		}
	}
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

func (s *Store) list(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := s.etcd.Get(ctx, s.prefix, clientv3.WithPrefix())
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if resp.Header.Revision < s.rev {
		return nil // the watch is past this read already
	}
	s.tokens, s.roles = map[string]*Token{}, map[string]Role{}
	for _, kv := range resp.Kvs {
		s.applyLocked(kv, false)
	}
	s.rev = resp.Header.Revision
	return nil
}

func (s *Store) applyLocked(kv *mvccpb.KeyValue, deleted bool) {
	kind, name, ok := strings.Cut(strings.TrimPrefix(string(kv.Key), s.prefix), "/")
	if !ok {
		return
	}
	switch kind {
	case "tokens":
		if deleted {
			delete(s.tokens, name)
			return
		}
		var t Token
		if err := json.Unmarshal(kv.Value, &t); err != nil {
			s.log.Error("ignoring a corrupt token record", zap.String("name", name), zap.Error(err))
			return
		}
		s.tokens[name] = &t
	case "roles":
		if deleted {
			delete(s.roles, name)
			return
		}
		var r Role
		if err := json.Unmarshal(kv.Value, &r); err != nil {
			s.log.Error("ignoring a corrupt role record", zap.String("name", name), zap.Error(err))
			return
		}
		s.roles[name] = r
	}
}

// Authenticate returns the principal of a presented token. A name this
// node does not know is read from etcd: a token made through another node
// a moment ago works here before this node's watch brings it.
func (s *Store) Authenticate(ctx context.Context, token string) (*Principal, error) {
	if token == "" {
		return nil, unauthenticated("no credential: send Authorization: Bearer TOKEN (or X-API-Key: TOKEN)")
	}
	name, secret, err := parse(token)
	if err != nil {
		return nil, err
	}
	s.mu.RLock()
	t, ok := s.tokens[name]
	s.mu.RUnlock()
	if !ok {
		t, ok = s.fetch(ctx, name)
	}
	if !ok {
		// Hash anyway: an unknown name takes as long as a wrong secret.
		(&Token{Hash: strings.Repeat("0", 64)}).check(secret, s.now())
		return nil, unauthenticated("unknown or revoked token")
	}
	if err := t.check(secret, s.now()); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	return t.principal(s.role), nil
}

// fetch reads the token name from etcd, for a name the watch has not
// brought. It keeps what it read only if the watch is behind that read: a
// revocation after it then still comes through the watch.
func (s *Store) fetch(ctx context.Context, name string) (*Token, bool) {
	if s.etcd == nil { // a store made for a test, with no etcd
		return nil, false
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	resp, err := s.etcd.Get(ctx, s.prefix+"tokens/"+name)
	if err != nil || len(resp.Kvs) == 0 {
		return nil, false
	}
	var t Token
	if json.Unmarshal(resp.Kvs[0].Value, &t) != nil {
		return nil, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if resp.Header.Revision <= s.rev { // the watch has seen as far: it decides
		cur, ok := s.tokens[name]
		return cur, ok
	}
	s.tokens[name] = &t
	return &t, true
}

// role resolves a role name: built-in or stored. Called with mu held.
func (s *Store) role(name string) (Role, bool) {
	if r, ok := BuiltIn[name]; ok {
		return r, true
	}
	r, ok := s.roles[name]
	return r, ok
}

// Role returns a role by name.
func (s *Store) Role(name string) (Role, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.role(name)
}

// Tokens lists the tokens by name (hashes and all: callers show what they choose).
func (s *Store) Tokens() []Token {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]Token, 0, len(s.tokens))
	for _, name := range slices.Sorted(maps.Keys(s.tokens)) {
		out = append(out, *s.tokens[name])
	}
	return out
}

// Roles lists the built-in and stored roles by name.
func (s *Store) Roles() []Role {
	s.mu.RLock()
	defer s.mu.RUnlock()
	all := maps.Clone(s.roles)
	maps.Copy(all, BuiltIn)
	out := make([]Role, 0, len(all))
	for _, name := range slices.Sorted(maps.Keys(all)) {
		out = append(out, all[name])
	}
	return out
}

// MaxTTL bounds a token's lifetime when one is given.
const MaxTTL = 10 * 365 * 24 * time.Hour

// CreateToken stores a new token for subject with roles (each must exist),
// limited to prefixes when given, expiring after ttl (0: never). It returns
// the token, which is never stored and cannot be shown again.
func (s *Store) CreateToken(ctx context.Context, meta kv.Meta, t Token, ttl time.Duration) (string, *Token, error) {
	if err := ValidName("name", t.Name); err != nil {
		return "", nil, err
	}
	if t.Subject == "" {
		t.Subject = t.Name
	}
	if len(t.Subject) > 256 {
		return "", nil, cfgerr.Errorf(cfgerr.Invalid, "", "subject", "the subject is over 256 bytes")
	}
	if len(t.Roles) == 0 {
		return "", nil, cfgerr.Errorf(cfgerr.Invalid, "", "roles", "a token needs a role: viewer, editor, approver, operator, admin, or one of cfgadm role list")
	}
	for _, r := range t.Roles {
		if _, ok := s.Role(r); !ok {
			return "", nil, cfgerr.Errorf(cfgerr.Invalid, "", "roles", "no role %q (cfgadm role list shows them)", r)
		}
	}
	if ttl < 0 || ttl > MaxTTL {
		return "", nil, cfgerr.Errorf(cfgerr.Invalid, "", "expires", "a token lasts from a second to ten years, not %v", ttl)
	}
	token, hash, err := NewSecret(t.Name)
	if err != nil {
		return "", nil, err
	}
	t.Hash, t.Created, t.Creator = hash, s.now().UTC(), meta.Actor
	if ttl > 0 {
		t.Expires = t.Created.Add(ttl)
	}
	b, _ := json.Marshal(t)
	key := s.prefix + "tokens/" + t.Name
	meta.Action = kv.ActionAuth
	shown := map[string]any{"subject": t.Subject, "roles": t.Roles, "prefixes": t.Prefixes, "expires": t.Expires}
	ops := append([]clientv3.Op{clientv3.OpPut(key, string(b))},
		s.kv.AuditOp(meta, []kv.Change{{Key: "auth/tokens/" + t.Name, New: shown}})...)
	resp, err := s.etcd.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).Then(ops...).Commit()
	if err != nil {
		return "", nil, kv.EtcdError(err)
	}
	if !resp.Succeeded {
		return "", nil, cfgerr.Errorf(cfgerr.Conflict, "", "name", "a token named %q exists: revoke it first, or pick another name", t.Name)
	}
	s.waitFor(ctx, resp.Header.Revision)
	return token, &t, nil
}

// RevokeToken deletes a token: every node refuses it once its watch has
// the delete (milliseconds).
func (s *Store) RevokeToken(ctx context.Context, meta kv.Meta, name string) error {
	return s.remove(ctx, meta, "tokens", name, "token")
}

// remove deletes a token's or role's record with its audit record, if it is there.
func (s *Store) remove(ctx context.Context, meta kv.Meta, kind, name, what string) error {
	key := s.prefix + kind + "/" + name
	meta.Action = kv.ActionAuth
	ops := append([]clientv3.Op{clientv3.OpDelete(key)},
		s.kv.AuditOp(meta, []kv.Change{{Key: "auth/" + kind + "/" + name, Deleted: true}})...)
	resp, err := s.etcd.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(key), ">", 0)).Then(ops...).Commit()
	if err != nil {
		return kv.EtcdError(err)
	}
	if !resp.Succeeded {
		return cfgerr.Errorf(cfgerr.NotFound, "", "name", "no %s %q", what, name)
	}
	s.waitFor(ctx, resp.Header.Revision)
	return nil
}

// PutRole creates or replaces a custom role.
func (s *Store) PutRole(ctx context.Context, meta kv.Meta, r Role) error {
	r.BuiltIn = false
	if err := r.validate(); err != nil {
		return err
	}
	b, _ := json.Marshal(r)
	meta.Action = kv.ActionAuth
	ops := append([]clientv3.Op{clientv3.OpPut(s.prefix+"roles/"+r.Name, string(b))},
		s.kv.AuditOp(meta, []kv.Change{{Key: "auth/roles/" + r.Name, New: r.Grants}})...)
	resp, err := s.etcd.Txn(ctx).Then(ops...).Commit()
	if err != nil {
		return kv.EtcdError(err)
	}
	s.waitFor(ctx, resp.Header.Revision)
	return nil
}

// DeleteRole removes a custom role; tokens that named it lose what it granted.
func (s *Store) DeleteRole(ctx context.Context, meta kv.Meta, name string) error {
	if _, ok := BuiltIn[name]; ok {
		return cfgerr.Errorf(cfgerr.Invalid, "", "name", "%q is a built-in role", name)
	}
	return s.remove(ctx, meta, "roles", name, "role")
}

// waitFor waits (briefly) until the store has applied rev: a token is
// usable on this node as soon as its creation answers.
func (s *Store) waitFor(ctx context.Context, rev int64) {
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		s.mu.RLock()
		ok := s.rev >= rev
		s.mu.RUnlock()
		if ok {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	// The watch lags: read the range now, so what this node wrote works
	// on it when the write answers.
	if err := s.list(ctx); err != nil {
		s.log.Warn("reading tokens and roles after a change", zap.Error(err))
	}
}
