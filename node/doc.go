// Package node is the cfgnode daemon: an embedded etcd member (or a client of
// an external etcd cluster), the store on it, and the HTTP API.
//
// Start brings a node up and returns once it serves; Close stops it: requests
// in flight finish, then etcd closes cleanly. Run does both around a context,
// for main.
package node
