package kv

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"cfgcluster/seal"
)

// DefaultPrefix is the etcd prefix under which cfgcluster keeps everything.
const DefaultPrefix = "/cfgcluster/"

// Layout maps configuration keys to etcd keys (ARCHITECTURE.md, "etcd key layout").
type Layout struct {
	prefix string
	open   seal.Opener // opens sealed values; nil: they read as a Sealed error
}

// NewLayout returns the layout under prefix; "" means DefaultPrefix. A
// missing trailing slash is added.
func NewLayout(prefix string) Layout {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	if !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	return Layout{prefix: prefix}
}

// WithOpener returns the layout whose Decode opens sealed values with o
// (a service's keyring).
func (l Layout) WithOpener(o seal.Opener) Layout {
	l.open = o
	return l
}

// ProposalsPrefix holds proposals (Proposal records): inside the client
// range, so watchers and SSE streams see them come and go.
func (l Layout) ProposalsPrefix() string { return l.prefix + "v1/proposals/" }

// ProposalKey holds one proposal.
func (l Layout) ProposalKey(id string) string { return l.ProposalsPrefix() + id }

// DataKeysPrefix holds the data keys that seal sensitive values, wrapped
// (DataKey records): outside the client range.
func (l Layout) DataKeysPrefix() string { return l.prefix + "v1/keys/" }

// DataKeysVersionKey is put with every data key made or retired: a commit
// that sealed a value compares it.
func (l Layout) DataKeysVersionKey() string { return l.prefix + "v1/keys-version" }

// DataKeyKey holds one data key.
func (l Layout) DataKeyKey(id string) string { return l.DataKeysPrefix() + id }

// Prefix is the layout's root prefix.
func (l Layout) Prefix() string { return l.prefix }

// SchemaKey holds the active schema document.
func (l Layout) SchemaKey() string { return l.prefix + "v1/schema" }

// LastChangeKey holds the ChangeMeta of the latest change that wrote or
// deleted a value, put in the same transaction. It is inside the client
// range: a watcher learns from it who deleted a value, and why (a delete
// leaves no envelope). Since no value moves without it, it is also the
// values' generation: a change that read every value (a schema change, a
// rollback of everything) compares this one key instead of each value's,
// so it stays within etcd's limit of operations per transaction
// (--max-txn-ops, 128 by default) at any number of values.
func (l Layout) LastChangeKey() string { return l.prefix + "v1/txn" }

// ValuesPrefix is the prefix of every value envelope.
func (l Layout) ValuesPrefix() string { return l.prefix + "v1/values/" }

// ValueKey holds the envelope of one configuration key.
func (l Layout) ValueKey(key string) string { return l.ValuesPrefix() + key }

// KeyOf returns the configuration key of a value's etcd key.
func (l Layout) KeyOf(etcdKey string) (string, bool) {
	return strings.CutPrefix(etcdKey, l.ValuesPrefix())
}

// MaintenancePrefix is the prefix of open maintenance windows.
func (l Layout) MaintenancePrefix() string { return l.prefix + "v1/maintenance/" }

// ClientRange is the key range [start, end) that service clients watch:
// maintenance windows, scheduled windows, the schema, the last change's
// metadata and the values — everything a service reacts to, and not the
// audit trail, the instance registry or auth, which every instance would
// otherwise receive from every other.
func (l Layout) ClientRange() (start, end string) {
	return l.MaintenancePrefix(), l.prefix + "v1/values0" // '0' follows '/': the end of v1/values/
}

// MemberNameKey holds the name an etcd member was added under (by its hex
// ID), until it starts and etcd knows its name: a member is named from
// cfgadm member add on.
func (l Layout) MemberNameKey(id string) string { return l.prefix + "v1/cluster/member-names/" + id }

// AuthPrefix holds tokens (AuthPrefix+"tokens/NAME") and roles
// (AuthPrefix+"roles/NAME"): outside the client range, watched by nodes.
func (l Layout) AuthPrefix() string { return l.prefix + "v1/auth/" }

// AuditPrefix is the prefix of every audit record.
func (l Layout) AuditPrefix() string { return l.prefix + "v1/audit/" }

// newAuditID names a new audit record: its id orders records by time; the
// record's revision is its etcd mod revision, which orders them exactly.
func (l Layout) newAuditID(now time.Time) string {
	return fmt.Sprintf("%020d-%08x", now.UnixNano(), rand.Uint32())
}

// AuditKeysPrefix is the prefix of the audit trail's index: one entry per
// changed key and change, "<key>:<record id>" (':' never appears in a key
// name, so one key's entries are never under another's prefix).
func (l Layout) AuditKeysPrefix() string { return l.prefix + "v1/audit-keys/" }

// auditKeyPrefix is the prefix of key's index entries; with asPrefix, of
// the entries of every key that starts with key.
func (l Layout) auditKeyPrefix(key string, asPrefix bool) string {
	if asPrefix {
		return l.AuditKeysPrefix() + key
	}
	return l.AuditKeysPrefix() + key + ":"
}

func (l Layout) auditKeyEntry(key, id string) string { return l.auditKeyPrefix(key, false) + id }
