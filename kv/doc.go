// Package kv is cfgcluster's store on etcd: the key layout, the value
// envelope codec, validated transactional writes, history, diff, rollback and
// the audit trail.
//
// Every change goes through Store.Update: it reads what it needs at one etcd
// revision R (serializable reads, served by the nearest member), checks the
// schema and every cross-key rule that reads a written key on the state after
// the write, and commits one etcd transaction guarded by the mod revision of
// every key it read and of the schema. The transaction writes the values and
// the audit record together. When a concurrent change wins, Update retries
// from the read, a bounded number of times, then fails with a Conflict error.
// The result is serializable: no interleaving of writers can break a rule.
//
// Set, Apply, Delete, Rollback and SetSchema are all Update with a different
// function. The envelope is encoded and decoded here and nowhere else.
//
// Entries returned by Store are freshly decoded for each call; callers own them.
package kv
