package adapters

import (
	"context"

	clientv3 "go.etcd.io/etcd/client/v3"

	"cfgcluster/kv"
	"cfgcluster/leases"
	"cfgcluster/watch"
)

// Register registers the service instance that wc serves with the cluster's
// instance registry: cfgadm instances, rollout waits and restart planning see
// what it has applied, refused and must restart for. Close the registration
// before wc.
func Register(ctx context.Context, cli *clientv3.Client, wc *watch.Client, inst kv.Instance, opts ...leases.RegisterOption) (*leases.Registration, error) {
	return leases.Register(ctx, cli, wc.Layout(), inst, wc, opts...)
}
