package leases

import (
	"context"
	"fmt"
	"math/rand/v2"
	"regexp"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"cfgcluster/cfgerr"
	"cfgcluster/kv"
	"cfgcluster/schema"
)

// Audit actions of maintenance windows.
const (
	ActionOn       = "maintenance.on"
	ActionExtend   = "maintenance.extend"
	ActionOff      = "maintenance.off"
	ActionSchedule = "maintenance.schedule"
	ActionCancel   = "maintenance.cancel"
)

// DefaultLeaseMargin is how long a window's key outlives its end time.
const DefaultLeaseMargin = 5 * time.Second

// MaxWindow is the longest window.
const MaxWindow = 30 * 24 * time.Hour

// Maintenance opens, extends and ends maintenance windows. It is safe for
// concurrent use and starts no goroutines.
type Maintenance struct {
	cli    *clientv3.Client
	store  *kv.Store
	layout kv.Layout
	margin time.Duration
	now    func() time.Time
}

// NewMaintenance returns the maintenance windows of the store's cluster.
// margin is how long a window's key outlives its end (0: DefaultLeaseMargin).
func NewMaintenance(cli *clientv3.Client, store *kv.Store, margin time.Duration) *Maintenance {
	if margin <= 0 {
		margin = DefaultLeaseMargin
	}
	return &Maintenance{cli: cli, store: store, layout: store.Layout(), margin: margin, now: time.Now}
}

func checkScope(scope string) error {
	if err := schema.ValidKeyName(scope); err != nil || len(scope) > 128 || strings.Contains(scope, ".") {
		return cfgerr.Errorf(cfgerr.Invalid, "", "scope", "%q is not a scope: use %q or a service name of [a-z0-9_-]", scope, kv.GlobalScope)
	}
	return nil
}

// MaxReason bounds a window's reason, in bytes.
const MaxReason = 1024

// MaxScheduleAhead is how far ahead a window may be scheduled.
const MaxScheduleAhead = 366 * 24 * time.Hour

func checkWindow(reason string, d time.Duration) error {
	if reason == "" {
		return cfgerr.Errorf(cfgerr.Invalid, "", "reason", "a maintenance window needs a reason")
	}
	if len(reason) > MaxReason {
		return cfgerr.Errorf(cfgerr.Invalid, "", "reason", "%d bytes is longer than the %d-byte limit", len(reason), MaxReason)
	}
	if d <= 0 || d > MaxWindow {
		return cfgerr.Errorf(cfgerr.Invalid, "", "duration", "%v is not a window length (more than 0, at most %v)", d, MaxWindow)
	}
	return nil
}

func newID(t time.Time) string { return fmt.Sprintf("%d-%04x", t.UnixMilli(), rand.Uint32()&0xffff) }

// grant makes a lease that outlives end by the margin.
func (m *Maintenance) grant(ctx context.Context, end time.Time) (clientv3.LeaseID, error) {
	ttl := int64(time.Until(end.Add(m.margin)).Seconds()) + 1
	l, err := m.cli.Grant(ctx, ttl)
	if err != nil {
		return 0, unavailable(err)
	}
	return l.ID, nil
}

// unavailable codes an etcd error: what retrying may cure is Unavailable,
// bad input (a request too large) is Invalid.
func unavailable(err error) error { return kv.EtcdError(err) }

func change(w *kv.Window, old *kv.Window) kv.Change {
	c := kv.Change{Key: "maintenance/" + w.Scope, New: w}
	if old != nil {
		c.Old = old
	}
	return c
}

// stored is where a window's key stands: its mod revision (0: absent) and
// its lease, which a change that replaces or removes the window revokes.
type stored struct {
	rev   int64
	lease clientv3.LeaseID
}

// current reads a scope's window, open or not yet swept, and where its key stands.
func (m *Maintenance) current(ctx context.Context, scope string) (*kv.Window, stored, error) {
	resp, err := m.cli.Get(ctx, m.layout.MaintenanceKey(scope))
	if err != nil {
		return nil, stored{}, unavailable(err)
	}
	if len(resp.Kvs) == 0 {
		return nil, stored{}, nil
	}
	w, err := kv.DecodeWindow(resp.Kvs[0].Value)
	return w, stored{resp.Kvs[0].ModRevision, clientv3.LeaseID(resp.Kvs[0].Lease)}, err
}

// revoke revokes leases no key uses any more; one that fails expires on
// its own at its TTL.
func (m *Maintenance) revoke(ctx context.Context, leases ...clientv3.LeaseID) {
	for _, l := range leases {
		if l == clientv3.NoLease {
			continue
		}
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		m.cli.Revoke(rctx, l)
		cancel()
	}
}

// Enable opens a window on scope now, for d.
func (m *Maintenance) Enable(ctx context.Context, scope, reason, author string, d time.Duration) (*kv.Window, error) {
	if err := checkScope(scope); err != nil {
		return nil, err
	}
	if err := checkWindow(reason, d); err != nil {
		return nil, err
	}
	old, st, err := m.current(ctx, scope)
	if err != nil {
		return nil, err
	}
	now := m.now()
	if old != nil && old.OpenAt(now) {
		return nil, cfgerr.Errorf(cfgerr.Conflict, "", "scope", "a window is open on %q until %s (%s): extend it or end it",
			scope, old.End.Format(time.RFC3339), old.Reason)
	}
	w := &kv.Window{ID: newID(now), Scope: scope, Reason: reason, Author: author, Start: now, End: now.Add(d)}
	return w, m.put(ctx, w, old, st, ActionOn, nil, nil)
}

// put writes w under a new lease if the scope's key is still where st
// says, with its audit record; extra ops go in the same transaction. The
// lease of the window it replaces, and the replaced leases, are revoked
// once it is written; its own lease is revoked only when it is known not to
// be: after an error whose outcome is unknown, put reads the key back.
func (m *Maintenance) put(ctx context.Context, w, old *kv.Window, st stored, action string, guard []clientv3.Cmp, replaced []clientv3.LeaseID, extra ...clientv3.Op) error {
	lease, err := m.grant(ctx, w.End)
	if err != nil {
		return err
	}
	key := m.layout.MaintenanceKey(w.Scope)
	ops := append([]clientv3.Op{clientv3.OpPut(key, string(kv.EncodeRecord(w)), clientv3.WithLease(lease))}, extra...)
	ops = append(ops, m.store.AuditOp(kv.Meta{Actor: w.Author, Action: action, Comment: w.Reason}, []kv.Change{change(w, old)})...)
	cmps := append([]clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(key), "=", st.rev)}, guard...)
	replaced = append(replaced, st.lease)
	resp, err := m.cli.Txn(ctx).If(cmps...).Then(ops...).Commit()
	if err != nil {
		// The transaction may have committed all the same: the window is
		// open if its key carries the new lease.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		got, gerr := m.cli.Get(rctx, key)
		cancel()
		switch {
		case gerr != nil:
			// Unknown either way: keep the lease; unused, it expires.
		case len(got.Kvs) > 0 && clientv3.LeaseID(got.Kvs[0].Lease) == lease:
			m.revoke(ctx, replaced...)
			return nil
		default:
			m.revoke(ctx, lease)
		}
		return unavailable(err)
	}
	if !resp.Succeeded {
		m.revoke(ctx, lease)
		return cfgerr.Errorf(cfgerr.Conflict, "", "scope", "the window of %q changed meanwhile; try again", w.Scope)
	}
	m.revoke(ctx, replaced...)
	return nil
}

// open reads scope's open window and where its key stands; NotFound if none is open.
func (m *Maintenance) open(ctx context.Context, scope string) (*kv.Window, stored, error) {
	if err := checkScope(scope); err != nil {
		return nil, stored{}, err
	}
	w, st, err := m.current(ctx, scope)
	if err != nil {
		return nil, stored{}, err
	}
	if w == nil || !w.OpenAt(m.now()) {
		return nil, stored{}, cfgerr.Errorf(cfgerr.NotFound, "", "scope", "no window is open on %q", scope)
	}
	return w, st, nil
}

// Extend moves the end of scope's open window d later.
func (m *Maintenance) Extend(ctx context.Context, scope, author string, d time.Duration) (*kv.Window, error) {
	old, st, err := m.open(ctx, scope)
	if err != nil {
		return nil, err
	}
	if err := checkWindow(old.Reason, old.End.Add(d).Sub(old.Start)); err != nil || d <= 0 {
		return nil, cfgerr.Errorf(cfgerr.Invalid, "", "duration", "cannot extend by %v (a window lasts at most %v)", d, MaxWindow)
	}
	w := *old
	w.End, w.Author = old.End.Add(d), author
	return &w, m.put(ctx, &w, old, st, ActionExtend, nil, nil)
}

// End closes scope's open window now.
func (m *Maintenance) End(ctx context.Context, scope, author string) (*kv.Window, error) {
	old, st, err := m.open(ctx, scope)
	if err != nil {
		return nil, err
	}
	closed := *old
	closed.End, closed.Author = m.now(), author
	key := m.layout.MaintenanceKey(scope)
	resp, err := m.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", st.rev)).Then(append([]clientv3.Op{clientv3.OpDelete(key)},
		m.store.AuditOp(kv.Meta{Actor: author, Action: ActionOff, Comment: old.Reason}, []kv.Change{change(&closed, old)})...)...).Commit()
	if err != nil {
		return nil, unavailable(err)
	}
	if !resp.Succeeded {
		return nil, cfgerr.Errorf(cfgerr.Conflict, "", "scope", "the window of %q changed meanwhile; try again", scope)
	}
	m.revoke(ctx, st.lease)
	return &closed, nil
}

// Status returns scope's open window.
func (m *Maintenance) Status(ctx context.Context, scope string) (*kv.Window, bool, error) {
	if err := checkScope(scope); err != nil {
		return nil, false, err
	}
	w, _, err := m.current(ctx, scope)
	if err != nil || w == nil {
		return nil, false, err
	}
	return w, w.OpenAt(m.now()), nil
}

// List returns the open windows and the scheduled ones.
func (m *Maintenance) List(ctx context.Context) (open, scheduled []*kv.Window, err error) {
	now := m.now()
	for _, p := range []string{m.layout.MaintenancePrefix(), m.layout.SchedulePrefix()} {
		resp, err := m.cli.Get(ctx, p, clientv3.WithPrefix())
		if err != nil {
			return nil, nil, unavailable(err)
		}
		for _, x := range resp.Kvs {
			w, err := kv.DecodeWindow(x.Value)
			if err != nil {
				return nil, nil, err
			}
			switch {
			case p == m.layout.SchedulePrefix():
				scheduled = append(scheduled, w)
			case w.OpenAt(now):
				open = append(open, w)
			}
		}
	}
	return open, scheduled, nil
}

// History returns the audit records of maintenance windows, newest first,
// through the audit trail's index of maintenance changes.
func (m *Maintenance) History(ctx context.Context, limit int) ([]*kv.AuditRecord, error) {
	return m.store.Audit(ctx, kv.AuditQuery{Key: "maintenance/", Prefix: true, Limit: limit})
}

// Schedule plans a window on scope from at, for d. The scheduler opens it.
func (m *Maintenance) Schedule(ctx context.Context, scope, reason, author string, at time.Time, d time.Duration) (*kv.Window, error) {
	if err := checkScope(scope); err != nil {
		return nil, err
	}
	if err := checkWindow(reason, d); err != nil {
		return nil, err
	}
	if !at.After(m.now()) {
		return nil, cfgerr.Errorf(cfgerr.Invalid, "", "at", "%s is not in the future: open the window now instead", at.Format(time.RFC3339))
	}
	if at.After(m.now().Add(MaxScheduleAhead)) {
		return nil, cfgerr.Errorf(cfgerr.Invalid, "", "at", "%s is more than %v ahead", at.Format(time.RFC3339), MaxScheduleAhead)
	}
	w := &kv.Window{ID: newID(m.now()), Scope: scope, Reason: reason, Author: author, Start: at, End: at.Add(d)}
	lease, err := m.grant(ctx, w.End)
	if err != nil {
		return nil, err
	}
	_, err = m.cli.Txn(ctx).Then(append([]clientv3.Op{
		clientv3.OpPut(m.layout.SchedulePrefix()+w.ID, string(kv.EncodeRecord(w)), clientv3.WithLease(lease))},
		m.store.AuditOp(kv.Meta{Actor: author, Action: ActionSchedule, Comment: reason}, []kv.Change{change(w, nil)})...)...).Commit()
	if err != nil {
		return nil, unavailable(err)
	}
	return w, nil
}

// windowID is the form of the ids newID makes.
var windowID = regexp.MustCompile(`^[0-9]{1,20}-[0-9a-f]{4}$`)

// Cancel removes a scheduled window that has not opened.
func (m *Maintenance) Cancel(ctx context.Context, id, author string) error {
	if !windowID.MatchString(id) {
		return cfgerr.Errorf(cfgerr.Invalid, "", "id", "%q is not a window id (cfgadm maintenance list shows them)", id)
	}
	key := m.layout.SchedulePrefix() + id
	resp, err := m.cli.Get(ctx, key)
	if err != nil {
		return unavailable(err)
	}
	if len(resp.Kvs) == 0 {
		return cfgerr.Errorf(cfgerr.NotFound, "", "id", "no scheduled window %q", id)
	}
	w, err := kv.DecodeWindow(resp.Kvs[0].Value)
	if err != nil {
		return err
	}
	tr, err := m.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", resp.Kvs[0].ModRevision)).Then(append([]clientv3.Op{clientv3.OpDelete(key)},
		m.store.AuditOp(kv.Meta{Actor: author, Action: ActionCancel, Comment: w.Reason}, []kv.Change{{Key: "maintenance/" + w.Scope, Old: w}})...)...).Commit()
	if err != nil {
		return unavailable(err)
	}
	if !tr.Succeeded {
		return cfgerr.Errorf(cfgerr.Conflict, "", "id", "scheduled window %q opened or changed meanwhile", id)
	}
	m.revoke(ctx, clientv3.LeaseID(resp.Kvs[0].Lease))
	return nil
}

// openScheduled opens a due scheduled window, once: the transaction deletes
// the scheduled key and fails if another node did so first.
func (m *Maintenance) openScheduled(ctx context.Context, sched *mvccpb.KeyValue, w *kv.Window) (bool, error) {
	old, st, err := m.current(ctx, w.Scope)
	if err != nil {
		return false, err
	}
	open := *w
	if old != nil && old.OpenAt(m.now()) && old.End.After(open.End) {
		open.End = old.End // never shorten a window already open
	}
	key := string(sched.Key)
	err = m.put(ctx, &open, old, st, ActionOn,
		[]clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(key), "=", sched.ModRevision)},
		[]clientv3.LeaseID{clientv3.LeaseID(sched.Lease)}, clientv3.OpDelete(key))
	if cfgerr.CodeOf(err) == cfgerr.Conflict {
		return false, nil // another node opened it, or it was cancelled
	}
	return err == nil, err
}
