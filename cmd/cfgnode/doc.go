// Command cfgnode runs a cfgcluster node: an embedded etcd member and the
// HTTP API. Every flag can also be set by the environment variable
// CFGNODE_<FLAG> (CFGNODE_DATA_DIR for --data-dir).
package main
