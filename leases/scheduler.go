package leases

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"

	"cfgcluster/kv"
)

// Scheduler opens scheduled windows on time. Every node runs one; an etcd
// election picks the one that opens windows at their start, and the others
// open any window still closed standbyDelay later, so a window opens on time
// even when the leader dies at the wrong moment. Close stops it.
type Scheduler struct {
	m      *Maintenance
	log    *zap.Logger
	name   string
	tick   time.Duration
	leader atomic.Bool
	opened atomic.Int64
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
}

// standbyDelay is how long after a window's start a node that is not the
// leader opens it, if it is still closed.
const standbyDelay = 500 * time.Millisecond

// SchedulerOption configures a Scheduler.
type SchedulerOption func(*Scheduler)

// WithSchedulerLogger sets the logger.
func WithSchedulerLogger(l *zap.Logger) SchedulerOption { return func(s *Scheduler) { s.log = l } }

// WithTick sets how often the scheduler looks at the plan (default 100 ms).
func WithTick(d time.Duration) SchedulerOption { return func(s *Scheduler) { s.tick = d } }

// StartScheduler starts a node's scheduler; name identifies the node in the election.
func StartScheduler(ctx context.Context, m *Maintenance, name string, sessionTTL int, opts ...SchedulerOption) *Scheduler {
	s := &Scheduler{m: m, log: zap.NewNop(), name: name, tick: 100 * time.Millisecond}
	for _, o := range opts {
		o(s)
	}
	ctx, s.cancel = context.WithCancel(context.WithoutCancel(ctx))
	s.wg.Add(2)
	go s.campaign(ctx, sessionTTL)
	go s.loop(ctx)
	return s
}

// IsLeader reports whether this node currently opens windows first.
func (s *Scheduler) IsLeader() bool { return s.leader.Load() }

// Opened counts the windows this node opened.
func (s *Scheduler) Opened() int64 { return s.opened.Load() }

// Close stops the scheduler and gives up leadership. Safe to call twice.
func (s *Scheduler) Close() {
	s.once.Do(func() {
		s.cancel()
		s.wg.Wait()
	})
}

// campaign keeps this node in the election for as long as it runs.
func (s *Scheduler) campaign(ctx context.Context, ttl int) {
	defer s.wg.Done()
	for ctx.Err() == nil {
		sess, err := concurrency.NewSession(s.m.cli, concurrency.WithTTL(ttl), concurrency.WithContext(ctx))
		if err != nil {
			sleep(ctx, time.Second)
			continue
		}
		e := concurrency.NewElection(sess, s.m.layout.ElectionPrefix())
		if err := e.Campaign(ctx, s.name); err == nil {
			s.leader.Store(true)
			s.log.Info("scheduler leader", zap.String("node", s.name))
			select {
			case <-ctx.Done():
			case <-sess.Done():
			}
			s.leader.Store(false)
			rctx, cancel := context.WithTimeout(context.Background(), time.Second)
			e.Resign(rctx)
			cancel()
		}
		sess.Close()
	}
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// loop opens the windows that are due.
func (s *Scheduler) loop(ctx context.Context) {
	defer s.wg.Done()
	t := time.NewTicker(s.tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		resp, err := s.m.cli.Get(ctx, s.m.layout.SchedulePrefix(), clientv3.WithPrefix())
		if err != nil {
			continue
		}
		now := s.m.now()
		for _, x := range resp.Kvs {
			w, err := kv.DecodeWindow(x.Value)
			if err != nil {
				continue
			}
			due := w.Start
			if !s.leader.Load() {
				due = due.Add(standbyDelay)
			}
			if now.Before(due) {
				continue
			}
			ok, err := s.m.openScheduled(ctx, x, w)
			if err != nil {
				s.log.Warn("opening a scheduled window", zap.String("scope", w.Scope), zap.Error(err))
				continue
			}
			if ok {
				s.opened.Add(1)
				s.log.Info("opened a scheduled window", zap.String("scope", w.Scope), zap.String("id", w.ID),
					zap.Duration("late", now.Sub(w.Start)), zap.Bool("leader", s.leader.Load()))
			}
		}
	}
}
