// Package etcdtest starts real embedded etcd members for tests, on loopback
// ports the kernel picks, with their data in t.TempDir(). It is test support
// only: production code never imports it.
package etcdtest
