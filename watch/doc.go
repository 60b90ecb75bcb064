// Package watch is the client that services embed: one etcd watch per
// process, multiplexed to any number of subscribers, keeping a local cache
// current within milliseconds (the seed design's ConfigurationService,
// ConfigurationCache and ConfigurationEventBus).
//
// # The read path
//
// New lists the client range (the schema, the values, maintenance windows)
// at a revision R, then watches from R+1 with previous values, progress
// notifications and require-leader, as Kubernetes informers do. Each etcd
// revision (one transaction) is applied whole: the state and the cache
// first, then the batch goes to the subscribers. Revisions only go forward;
// a repeated one is dropped. After a disconnect the watch resumes at the
// applied revision; when etcd has compacted past it, the client re-lists,
// diffs against what it held and emits the differences, deletes included.
// The client asks etcd to confirm its revision every progress interval
// (WithProgressInterval); a watch with no event and no confirmation for
// three intervals is deemed stuck (a member cut off from its cluster) and
// restarted, which lets the balancer pick another member. Staleness() is
// the age of the last confirmation.
//
// # Lookups
//
// Get, the typed getters and Lookup look, in order, at:
//
//  1. the environment: CFG_<KEY> (schema.EnvVar), read at start;
//  2. the cache: a bounded golang-lru cache (WithCacheSize, default 1,000)
//     with a TTL per type (WithTTL, default 300 s), refreshed in place by the
//     watch when a cached key changes and lazily after expiry;
//  3. the watched state (every value, as of the applied revision), or a
//     serializable read from the nearest member before the first list;
//  4. the last-known snapshot file (WithSnapshotFile), while etcd has not
//     been reached since start;
//  5. the schema default.
//
// A hit takes no lock and allocates nothing. Values handed out are shared
// with the cache and immutable: do not modify a list or json value (Strings
// and JSON return copies).
//
// Keys marked requires_restart keep the value they had at start; a newer
// cluster value is recorded as pending (PendingRestart, RestartRequired) and
// its event carries RequiresRestart. A key set in the environment produces no
// events: what the service sees does not change.
//
// With WithSchema the client checks every value against the service's own
// schema: a value that fails it is logged, counted and listed by Rejections,
// and the last valid value is kept.
//
// # Subscribers
//
// Subscribe registers a Handler for a key or a pattern ("session.*", "*")
// and costs no goroutine: a fixed pool of workers (WithWorkers) delivers, one
// worker per subscriber at a time, so each subscriber sees its batches in
// revision order, each revision whole, never two calls at once.
//
// The slow-subscriber policy: each subscriber has a bounded queue
// (WithQueueSize, default 256 batches). When it is full, new batches for that
// subscriber are dropped and counted, and once it has caught up it gets a
// Resync notice (OnResync) saying how many it missed: never a silent loss,
// never a stalled watch. A handler that panics or runs longer than the slow
// threshold five times in a row is cut off by a circuit breaker for 1 s,
// doubling up to a minute; what it misses meanwhile is counted and reported
// by a Resync notice. After a re-list every subscriber gets a Resync notice.
//
// # Goroutines
//
// A Client owns its goroutines (the watch loop, housekeeping and the
// workers); Close stops them all and waits for them. Close is idempotent.
package watch
