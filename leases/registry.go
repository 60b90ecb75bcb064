package leases

import (
	"context"
	"os"
	"reflect"
	"strconv"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"

	"cfgcluster/cfgerr"
	"cfgcluster/kv"
)

// Reporter is what an instance reports: watch.Client implements it.
type Reporter interface {
	InstanceReport() kv.Report
}

// Registration keeps an instance registered until Close.
type Registration struct {
	cli      *clientv3.Client
	key      string
	inst     kv.Instance
	r        Reporter
	ttl      int
	interval time.Duration
	log      *zap.Logger
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	once     sync.Once
}

// RegisterOption configures a registration.
type RegisterOption func(*Registration)

// WithTTL sets the session TTL in seconds (default 10): a dead instance
// disappears within it.
func WithTTL(seconds int) RegisterOption { return func(r *Registration) { r.ttl = seconds } }

// WithReportInterval sets how often the report is refreshed (default 250 ms).
func WithReportInterval(d time.Duration) RegisterOption {
	return func(r *Registration) { r.interval = d }
}

// WithRegistryLogger sets the logger.
func WithRegistryLogger(l *zap.Logger) RegisterOption { return func(r *Registration) { r.log = l } }

// Register registers an instance of inst.Service under a lease kept alive by
// a concurrency.Session, and keeps its report (applied revision,
// rejections, pending restarts) current. An empty ID is the host name and
// process id.
func Register(ctx context.Context, cli *clientv3.Client, layout kv.Layout, inst kv.Instance, r Reporter, opts ...RegisterOption) (*Registration, error) {
	if err := checkScope(inst.Service); err != nil || inst.Service == kv.GlobalScope {
		return nil, cfgerr.Errorf(cfgerr.Invalid, "", "service", "%q is not a service name ([a-z0-9_-], not %q)", inst.Service, kv.GlobalScope)
	}
	if inst.Host == "" {
		inst.Host, _ = os.Hostname()
	}
	if inst.ID == "" {
		inst.ID = inst.Host + "-" + strconv.Itoa(os.Getpid())
	}
	if inst.Started.IsZero() {
		inst.Started = time.Now().UTC()
	}
	reg := &Registration{cli: cli, key: layout.InstanceKey(inst.Service, inst.ID), inst: inst, r: r, ttl: 10,
		interval: 250 * time.Millisecond, log: zap.NewNop()}
	for _, o := range opts {
		o(reg)
	}
	sess, err := reg.session(ctx)
	if err != nil {
		return nil, err
	}
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	reg.cancel = cancel
	reg.wg.Add(1)
	go reg.run(rctx, sess)
	return reg, nil
}

// Key is the instance's etcd key.
func (reg *Registration) Key() string { return reg.key }

// session opens a session and writes the instance under its lease.
func (reg *Registration) session(ctx context.Context) (*concurrency.Session, error) {
	sess, err := concurrency.NewSession(reg.cli, concurrency.WithTTL(reg.ttl), concurrency.WithContext(context.WithoutCancel(ctx)))
	if err != nil {
		return nil, unavailable(err)
	}
	reg.inst.Report = reg.r.InstanceReport()
	if err := reg.put(ctx, sess); err != nil {
		sess.Close()
		return nil, err
	}
	return sess, nil
}

func (reg *Registration) put(ctx context.Context, sess *concurrency.Session) error {
	reg.inst.Reported = time.Now().UTC()
	_, err := reg.cli.Put(ctx, reg.key, string(kv.EncodeRecord(reg.inst)), clientv3.WithLease(sess.Lease()))
	if err != nil {
		return unavailable(err)
	}
	return nil
}

// run refreshes the report when it changes and re-registers after the
// session is lost (etcd unreachable for longer than the TTL).
func (reg *Registration) run(ctx context.Context, sess *concurrency.Session) {
	defer reg.wg.Done()
	t := time.NewTicker(reg.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			// Revoke the lease: the instance leaves at once.
			cctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			reg.cli.Revoke(cctx, sess.Lease())
			cancel()
			sess.Orphan()
			return
		case <-sess.Done():
			for ctx.Err() == nil {
				s, err := reg.session(ctx)
				if err == nil {
					sess = s
					break
				}
				reg.log.Warn("re-registering", zap.Error(err))
				sleep(ctx, time.Second)
			}
		case <-t.C:
			rep := reg.r.InstanceReport()
			if reflect.DeepEqual(rep, reg.inst.Report) {
				continue
			}
			reg.inst.Report = rep
			if err := reg.put(ctx, sess); err != nil {
				reg.log.Warn("reporting", zap.Error(err))
			}
		}
	}
}

// Close deregisters the instance (its key is removed at once) and stops
// reporting. Safe to call twice.
func (reg *Registration) Close() {
	reg.once.Do(func() {
		reg.cancel()
		reg.wg.Wait()
	})
}

// Instances lists the live instances, of one service or ("") of all.
func Instances(ctx context.Context, cli clientv3.KV, layout kv.Layout, service string) ([]*kv.Instance, int64, error) {
	p := layout.InstancesPrefix()
	if service != "" {
		p += service + "/"
	}
	resp, err := cli.Get(ctx, p, clientv3.WithPrefix())
	if err != nil {
		return nil, 0, unavailable(err)
	}
	var out []*kv.Instance
	for _, x := range resp.Kvs {
		in, err := kv.DecodeInstance(x.Value)
		if err != nil {
			continue
		}
		out = append(out, in)
	}
	return out, resp.Header.Revision, nil
}
