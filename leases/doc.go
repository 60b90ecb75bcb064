// Package leases holds cfgcluster's lease-bound state: maintenance windows
// that close by themselves, the scheduler that opens planned windows on
// time, and the registry of live service instances with what each has
// applied.
//
// Wall-clock times are the truth and leases are the cleanup. etcd restarts a
// lease's TTL when its leader changes (etcd issue 9395), so a lease only
// guarantees that a key goes away eventually. A window stores its absolute
// end; clients treat it as open only while now < end; its key is attached to
// a lease whose TTL covers the end, so it disappears even if every node that
// could close it is gone.
//
// Scheduled windows are opened by the node that an etcd election chose, at
// their start time; every other node stands by to open them half a second
// later if the leader did not. The open is one transaction guarded by the
// scheduled key's existence, so a window never opens twice.
//
// Instances register under a lease kept alive by a concurrency.Session:
// when the process dies the key vanishes within the session TTL.
package leases
