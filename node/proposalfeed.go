package node

import (
	"context"
	"errors"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"cfgcluster/kv"
)

// proposalFeed hands every proposal made or decided to the SSE streams that
// asked for them (GET /v1/watch?proposals=true), from one etcd watch of the
// proposals' range. Proposal events are live only: a stream that resumes
// gets the value changes it missed, and re-lists /v1/proposals for the rest.
type proposalFeed struct {
	mu   sync.Mutex
	subs map[*stream]struct{}
}

func newProposalFeed() *proposalFeed { return &proposalFeed{subs: map[*stream]struct{}{}} }

func (f *proposalFeed) join(st *stream) {
	f.mu.Lock()
	f.subs[st] = struct{}{}
	f.mu.Unlock()
}

func (f *proposalFeed) leave(st *stream) {
	f.mu.Lock()
	delete(f.subs, st)
	f.mu.Unlock()
}

// publish hands p to every stream that may read it; a stream whose buffer
// is full is told to re-list.
func (f *proposalFeed) publish(p *kv.Proposal) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for st := range f.subs {
		if !st.mayProposal(p) {
			continue
		}
		select {
		case st.props <- p:
		default:
			select {
			case st.propsLost <- struct{}{}:
			default:
			}
		}
	}
}

// run watches the proposals' range from rev on until ctx ends, publishing
// each put; after an error it watches again from where it was (from now, if
// that was compacted: streams are told to re-list).
func (f *proposalFeed) run(ctx context.Context, etcd *clientv3.Client, layout kv.Layout, rev int64, log *zap.Logger) {
	for ctx.Err() == nil {
		wc := etcd.Watch(clientv3.WithRequireLeader(ctx), layout.ProposalsPrefix(), clientv3.WithPrefix(), clientv3.WithRev(rev+1))
		for resp := range wc {
			if err := resp.Err(); err != nil {
				if errors.Is(err, rpctypes.ErrCompacted) {
					rev = resp.CompactRevision - 1
					f.lostAll()
				}
				log.Debug("proposal watch ended", zap.Error(err))
				break
			}
			for _, ev := range resp.Events {
				rev = ev.Kv.ModRevision
				if ev.Type != clientv3.EventTypePut {
					continue
				}
				p, err := kv.DecodeProposal(ev.Kv.Value, ev.Kv.ModRevision)
				if err != nil {
					log.Error("a stored proposal does not decode", zap.ByteString("key", ev.Kv.Key), zap.Error(err))
					continue
				}
				f.publish(p)
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// lostAll tells every stream to re-list the proposals.
func (f *proposalFeed) lostAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for st := range f.subs {
		select {
		case st.propsLost <- struct{}{}:
		default:
		}
	}
}
