package node

import (
	"context"

	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"cfgcluster/kv"
	"cfgcluster/watch"
)

// replay reads the value changes of revisions (since, until] from etcd's
// history, as the batches a stream would have had: a stream resuming with a
// Last-Event-ID older than this node's ring (a node that restarted since, or
// a client that moved here from another node) gets every change, not a
// resync, as long as etcd has not compacted them.
func (n *Node) replay(ctx context.Context, since, until int64) ([]watch.Batch, error) {
	ctx, cancel := context.WithTimeout(clientv3.WithRequireLeader(ctx), 5*time.Second)
	defer cancel()
	layout := n.store.Layout()
	start, end := layout.ClientRange()
	wch := n.client.Watch(ctx, start, clientv3.WithRange(end), clientv3.WithRev(since+1), clientv3.WithPrevKV(),
		clientv3.WithProgressNotify())
	// A progress notice says the watch has sent everything up to its
	// revision: then nothing up to until is still to come. etcd answers a
	// request for one only once the watch has caught up, so ask until then.
	ask := time.NewTicker(50 * time.Millisecond)
	defer ask.Stop()
	var evs []*clientv3.Event
	for {
		var resp clientv3.WatchResponse
		var ok bool
		select {
		case <-ask.C:
			if err := n.client.RequestProgress(ctx); err != nil {
				return nil, err
			}
			continue
		case resp, ok = <-wch:
		}
		if !ok {
			return nil, fmt.Errorf("the history watch ended: %w", ctx.Err())
		}
		if resp.CompactRevision > 0 {
			return nil, fmt.Errorf("revision %d is compacted (etcd keeps history from %d)", since+1, resp.CompactRevision)
		}
		if err := resp.Err(); err != nil {
			return nil, err
		}
		done := resp.IsProgressNotify() && resp.Header.Revision >= until
		for _, ev := range resp.Events {
			if ev.Kv.ModRevision > until {
				done = true
				break
			}
			evs = append(evs, ev)
		}
		if done {
			break
		}
	}
	return n.historyBatches(layout, evs), nil
}

// historyBatches turns etcd events into per-revision batches of value
// changes, as the node's watch client makes them: old and new values, who
// made the change (for a delete, from the last-change key) and why.
func (n *Node) historyBatches(layout kv.Layout, evs []*clientv3.Event) []watch.Batch {
	sch := n.watch.Schema()
	var out []watch.Batch
	for i := 0; i < len(evs); {
		rev := evs[i].Kv.ModRevision
		j := i
		var meta kv.ChangeMeta
		for ; j < len(evs) && evs[j].Kv.ModRevision == rev; j++ {
			if string(evs[j].Kv.Key) == layout.LastChangeKey() {
				meta, _ = kv.DecodeChangeMeta(evs[j].Kv.Value)
			}
		}
		b := watch.Batch{Revision: rev}
		for _, ev := range evs[i:j] {
			key, ok := layout.KeyOf(string(ev.Kv.Key))
			if !ok {
				continue
			}
			e := watch.Event{Key: key, Revision: rev, Source: watch.SourceCluster}
			if ev.PrevKv != nil {
				if old, err := layout.Decode(sch, ev.PrevKv); err == nil {
					e.Old = old.Value
				}
			}
			k, known := sch.Lookup(key)
			if known {
				e.RequiresRestart = k.RequiresRestart
			}
			if ev.Type == clientv3.EventTypeDelete {
				e.Kind, e.Source = watch.Delete, watch.SourceDefault
				e.Actor, e.Time, e.Comment = meta.Actor, meta.Time, meta.Comment
				if known {
					e.New, _ = k.DefaultValue()
				}
			} else {
				dec, err := layout.Decode(sch, ev.Kv)
				if err != nil {
					continue // a value today's schema refuses: the node's own watch skips it too
				}
				e.Kind, e.New, e.Actor, e.Time, e.Comment = watch.Put, dec.Value, dec.Actor, dec.Time, dec.Comment
				if ev.PrevKv != nil {
					e.Kind = watch.Update
				}
			}
			b.Events = append(b.Events, e)
		}
		if len(b.Events) > 0 {
			out = append(out, b)
		}
		i = j
	}
	return out
}
