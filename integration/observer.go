package integration

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"cfgcluster/api"
	"cfgcluster/kv"
	"cfgcluster/schema"
	"cfgcluster/watch"
	"cfgcluster/watch/watchtest"
)

// Observer is a watch client on every member of a cluster, as a service
// would run it, recording every batch and resync notice it is given, in the
// order it is given them.
type Observer struct {
	C    *watch.Client
	sub  *watch.Subscription
	etcd *clientv3.Client
	rec  watchtest.Recorder
	from int64 // the revision already applied when it started; Verify moves it on
	cl   *Cluster
}

// Observe starts an observer; the test's cleanup closes it.
func (cl *Cluster) Observe(t *testing.T) *Observer {
	t.Helper()
	cc := cl.Etcd()
	cc.DialKeepAliveTime, cc.DialKeepAliveTimeout, cc.MaxCallRecvMsgSize = time.Second, time.Second, 64<<20
	etcd, err := clientv3.New(cc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := watch.New(ctx, etcd, watch.WithProgressInterval(300*time.Millisecond), watch.WithQueueSize(100000))
	if err != nil {
		t.Fatal(err)
	}
	o := &Observer{C: c, etcd: etcd, from: c.Revision(), cl: cl}
	o.sub = c.Subscribe("*", &o.rec)
	t.Cleanup(func() { c.Close(); etcd.Close() })
	return o
}

// auditPage reads a page of the trail through the first node that answers.
func (o *Observer) auditPage(ctx context.Context, before int64) ([]api.AuditRecord, error) {
	var errs []error
	for i := range o.cl.Nodes {
		l, err := o.cl.API(i).Audit(ctx, "", before, kv.MaxAuditLimit)
		if err == nil {
			return l.Records, nil
		}
		errs = append(errs, fmt.Errorf("node %d: %w", i, err))
	}
	return nil, errors.Join(errs...)
}

// Check fails the test unless Verify passes.
func (o *Observer) Check(t *testing.T, cl *Cluster) {
	t.Helper()
	n, err := o.Verify()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("watch: %d batches in order, none missing, cache equal to etcd", n)
}

// Verify checks that, within 10 s, the observer has been given every change
// committed since it started (or since the last Verify): each revision
// once, in order, each transaction whole — and that its cache then equals a
// linearizable read of every key. A re-list's diff batch, which a resync
// notice follows, stands for the revisions it covers; every other batch must
// be exactly its transaction, before and after a resync alike. It reads only
// the audit records written since, newest first, through the nodes' API,
// as cfgadm audit does; it returns the number of batches checked.
func (o *Observer) Verify() (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	want := map[int64][]string{}
	var last int64
	for before := int64(0); ; {
		recs, err := o.auditPage(ctx, before)
		if err != nil {
			return 0, err
		}
		done := len(recs) == 0
		for _, r := range recs {
			if r.Revision <= o.from {
				done = true
				break
			}
			before = r.Revision
			if len(r.Changes) == 0 || r.SchemaChanged || strings.HasPrefix(r.Changes[0].Key, "maintenance/") {
				continue
			}
			for _, c := range r.Changes {
				want[r.Revision] = append(want[r.Revision], c.Key)
			}
			last = max(last, r.Revision)
		}
		if done {
			break
		}
	}
	// Wait for the client to apply the last change and its workers to hand
	// out every batch.
	deadline := time.Now().Add(10 * time.Second)
	for !(o.C.Revision() >= last && o.sub.HasSynced()) {
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("watch: revision %d not delivered within 10 s (at %d)", last, o.C.Revision())
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Check what was given up to the last audited change; keep anything
	// later (written after the audit was read) for the next Verify. A
	// failed check is reported once: the next one starts after it.
	seq := o.rec.Take(last)
	defer func() { o.from = max(o.from, last) }()
	seen := map[int64]bool{}
	var covered [][2]int64 // (after, upTo]: revisions a re-list stands for
	prev, n := o.from, 0
	for i, x := range seq {
		if x.Resync != nil {
			covered = append(covered, [2]int64{prev, x.Resync.Revision})
			prev = max(prev, x.Resync.Revision)
			continue
		}
		b := x.Batch
		if b.Revision <= prev && !(i+1 < len(seq) && seq[i+1].Resync != nil) {
			return 0, fmt.Errorf("watch: revision %d after %d (reordered or duplicated)", b.Revision, prev)
		}
		n++
		seen[b.Revision] = true
		relist := i+1 < len(seq) && seq[i+1].Resync != nil && seq[i+1].Resync.Revision == b.Revision
		if relist {
			// A re-list's diff: what changed over every revision since the
			// last batch, up to its own.
			covered = append(covered, [2]int64{prev, b.Revision})
			prev = max(prev, b.Revision)
			continue
		}
		prev = max(prev, b.Revision)
		var keys []string
		for _, e := range b.Events {
			keys = append(keys, e.Key)
		}
		w := want[b.Revision]
		sort.Strings(keys)
		sort.Strings(w)
		if !slices.Equal(keys, w) {
			return 0, fmt.Errorf("watch: revision %d gave %v, the transaction wrote %v", b.Revision, keys, w)
		}
	}
	for rev := range want {
		if seen[rev] || slices.ContainsFunc(covered, func(c [2]int64) bool { return rev > c[0] && rev <= c[1] }) {
			continue
		}
		return 0, fmt.Errorf("watch: revision %d (%v) was never delivered (a gap)", rev, want[rev])
	}
	// The cache equals a linearizable read at the same revision.
	store := kv.New(o.etcd)
	sch, _, _, err := store.Schema(ctx)
	if err != nil {
		return 0, err
	}
	for _, k := range sch.KeyNames() {
		e, err := store.Get(ctx, k, 0)
		v, verr := o.C.Lookup(k)
		if (err == nil) != (verr == nil) || err == nil && !schema.Equal(e.Value, v.Value) {
			return 0, fmt.Errorf("cache of %s: %v (%v); etcd: %v (%v)", k, v.Value, verr, e, err)
		}
	}
	return n, nil
}
