package api

import (
	"encoding/json"
	"time"
)

// WhoAmI answers GET /v1/whoami: the caller's token and what it may do.
type WhoAmI struct {
	Token   string  `json:"token"`
	Subject string  `json:"subject"`
	Grants  []Grant `json:"grants"`
}

// Grant gives verbs (read, read-sensitive, write, approve, operate, admin)
// on the keys under Prefix ("" is every key).
type Grant struct {
	Verbs  []string `json:"verbs"`
	Prefix string   `json:"prefix,omitempty"`
}

// Role is a named set of grants; the built-in ones cannot change.
type Role struct {
	Name    string  `json:"name"`
	Grants  []Grant `json:"grants"`
	BuiltIn bool    `json:"built_in,omitempty"`
}

// RoleList answers GET /v1/roles.
type RoleList struct {
	Roles []Role `json:"roles"`
}

// TokenRequest is the body of POST /v1/tokens.
type TokenRequest struct {
	Name     string   `json:"name"`
	Subject  string   `json:"subject,omitempty"` // default: the name
	Roles    []string `json:"roles"`
	Prefixes []string `json:"prefixes,omitempty"`
	Expires  string   `json:"expires,omitempty"` // a duration: 720h; none: never
	Comment  string   `json:"comment,omitempty"`
}

// TokenInfo is a token as it is listed: never its secret.
type TokenInfo struct {
	Name     string    `json:"name"`
	Subject  string    `json:"subject"`
	Roles    []string  `json:"roles"`
	Prefixes []string  `json:"prefixes,omitempty"`
	Created  time.Time `json:"created"`
	Expires  time.Time `json:"expires,omitzero"`
	Creator  string    `json:"creator,omitempty"`
}

// TokenCreated answers POST /v1/tokens: the token, shown this once.
type TokenCreated struct {
	TokenInfo
	Token string `json:"token"`
}

// ServiceAccount is an etcd user for one service: it reads the client
// range and writes only its own service's instances.
type ServiceAccount struct {
	Name    string    `json:"name"`
	Role    string    `json:"role"` // its etcd role
	Created time.Time `json:"created"`
	Creator string    `json:"creator"`
}

// ServiceAccountRequest is the body of POST /v1/service-accounts.
type ServiceAccountRequest struct {
	Name    string `json:"name"`
	Comment string `json:"comment,omitempty"`
}

// ServiceAccountCreated answers POST /v1/service-accounts: the etcd user
// and its password, shown this once; a service passes them to clientv3.
type ServiceAccountCreated struct {
	ServiceAccount
	EtcdUser     string `json:"etcd_user"`
	EtcdPassword string `json:"etcd_password"`
}

// ServiceAccountList answers GET /v1/service-accounts.
type ServiceAccountList struct {
	ServiceAccounts []ServiceAccount `json:"service_accounts"`
}

// TokenList answers GET /v1/tokens.
type TokenList struct {
	Tokens []TokenInfo `json:"tokens"`
}

// VersionHeader is on every answer of a node's API, with the API version
// (v1): a client that gets an answer without it reached some other server.
const VersionHeader = "Cfgcluster-Api"

// VersionInfo answers GET /v1/version.
type VersionInfo struct {
	Name      string `json:"name"`                 // the node's name (its member's, when embedded)
	Node      string `json:"node"`                 // the node's build (version.Build)
	API       string `json:"api"`                  // the API version it serves
	Etcd      string `json:"etcd,omitempty"`       // the version of the etcd member it talks to first
	ClusterID string `json:"cluster_id,omitempty"` // etcd's cluster ID, in hex
}

// Value is a key's value with its metadata. Sensitive values are Redacted.
type Value struct {
	Key             string     `json:"key"`
	Value           any        `json:"value"`
	Type            string     `json:"type"`
	Source          string     `json:"source"`            // cluster | default | unset (list only: no value, no default)
	Default         any        `json:"default,omitempty"` // the schema default, if the key has one
	Revision        int64      `json:"revision,omitempty"`
	CreateRevision  int64      `json:"create_revision,omitempty"`
	Version         int64      `json:"version,omitempty"`
	Actor           string     `json:"actor,omitempty"`
	Time            *time.Time `json:"time,omitempty"`
	Comment         string     `json:"comment,omitempty"`
	Sensitive       bool       `json:"sensitive,omitempty"`
	RequiresRestart bool       `json:"requires_restart,omitempty"`
}

// Redacted stands in for a sensitive value.
const Redacted = "<redacted>"

// ValueList answers GET /v1/keys?prefix=P.
type ValueList struct {
	Values []Value `json:"values"`
}

// SetRequest is the body of PUT /v1/keys/{key}. Give Value (typed JSON) or
// Text (parsed by the key's type, as on the command line: "20m", "true").
type SetRequest struct {
	Value          any     `json:"value,omitempty"`
	Text           *string `json:"text,omitempty"`
	Comment        string  `json:"comment,omitempty"`
	ExpectRevision *int64  `json:"expect_revision,omitempty"`
	WriteOptions
}

// WriteOptions say what to do with a change of keys that need approval:
// by default it is stored as a proposal (202 Accepted, WriteResult.Proposal);
// with NoPropose it is refused (412), and with Force (admin on every key,
// and a comment saying why) it applies at once, marked forced.
type WriteOptions struct {
	NoPropose bool `json:"no_propose,omitempty"`
	Force     bool `json:"force,omitempty"`
}

// Change is one key of a batch.
type Change struct {
	Key            string  `json:"key"`
	Value          any     `json:"value,omitempty"`
	Text           *string `json:"text,omitempty"`
	Delete         bool    `json:"delete,omitempty"`
	ExpectRevision *int64  `json:"expect_revision,omitempty"`
}

// ApplyRequest is the body of POST /v1/apply: all changes or none.
type ApplyRequest struct {
	Changes []Change `json:"changes"`
	Comment string   `json:"comment,omitempty"`
	DryRun  bool     `json:"dry_run,omitempty"`
	WriteOptions
}

// WriteResult answers every write.
type WriteResult struct {
	Revision int64          `json:"revision,omitempty"`
	DryRun   bool           `json:"dry_run,omitempty"`
	Changes  []ChangeRecord `json:"changes"`
	// Unchanged are keys asked to be deleted that had no value: done already.
	Unchanged []string `json:"unchanged,omitempty"`
	Rollout   *Rollout `json:"rollout,omitempty"` // with ?wait=
	// Proposal is set (202 Accepted) when the change needs approval: it
	// was stored as this proposal and nothing else was written.
	Proposal *Proposal `json:"proposal,omitempty"`
	Forced   bool      `json:"forced,omitempty"`
}

// Proposal is a change waiting for approval (GET /v1/proposals/{id}).
type Proposal struct {
	ID        string           `json:"id"`
	State     string           `json:"state"` // pending, applied, rejected, withdrawn, stale, expired
	Author    string           `json:"author"`
	Comment   string           `json:"comment,omitempty"`
	Action    string           `json:"action"`
	Created   time.Time        `json:"created"`
	Expires   time.Time        `json:"expires"`
	Needs     int              `json:"needs"` // approvals it needs in all
	Approvals []Decision       `json:"approvals,omitempty"`
	Closed    *Decision        `json:"closed,omitempty"`   // who rejected, withdrew or gave the last approval
	Revision  int64            `json:"revision,omitempty"` // the change's, once applied
	Changes   []ProposedChange `json:"changes"`
	Schema    string           `json:"schema,omitempty"` // a proposed schema document
}

// ProposedChange is one key of a proposal with its current value, for the
// diff; a sensitive key's are Redacted.
type ProposedChange struct {
	Key             string `json:"key"`
	Value           any    `json:"value,omitempty"`
	Delete          bool   `json:"delete,omitempty"`
	Current         any    `json:"current,omitempty"`
	CurrentRevision int64  `json:"current_revision,omitempty"` // 0: no value (the default applies)
	BaseRevision    int64  `json:"base_revision"`              // the key's when proposed
	Redacted        bool   `json:"redacted,omitempty"`
}

// Decision is an approval, a rejection or a withdrawal.
type Decision struct {
	Actor   string    `json:"actor"`
	Time    time.Time `json:"time"`
	Comment string    `json:"comment,omitempty"`
}

// ProposalList answers GET /v1/proposals?state=S, newest first.
type ProposalList struct {
	Proposals []Proposal `json:"proposals"`
}

// DecisionRequest is POST /v1/proposals/{id}/approve, /reject, /withdraw.
type DecisionRequest struct {
	Comment string `json:"comment,omitempty"`
}

// ChangeRecord is one key's part of a change.
type ChangeRecord struct {
	Key         string `json:"key"`
	Old         any    `json:"old,omitempty"`
	New         any    `json:"new,omitempty"`
	OldRevision int64  `json:"old_revision,omitempty"`
	Deleted     bool   `json:"deleted,omitempty"`
	Redacted    bool   `json:"redacted,omitempty"`
	// A value over 1 KiB is not repeated in the audit trail's record: the
	// key's history has it.
	OldOmitted bool `json:"old_omitted,omitempty"`
	NewOmitted bool `json:"new_omitted,omitempty"`
}

// HistoryEntry is one revision of a key.
type HistoryEntry struct {
	Revision int64     `json:"revision"`
	Value    any       `json:"value,omitempty"`
	Deleted  bool      `json:"deleted,omitempty"`
	Redacted bool      `json:"redacted,omitempty"`
	Actor    string    `json:"actor,omitempty"`
	Time     time.Time `json:"time"`
	Action   string    `json:"action,omitempty"`
	Comment  string    `json:"comment,omitempty"`
	Source   string    `json:"source"` // etcd | audit
}

// History answers GET /v1/keys/{key}/history, newest first.
type History struct {
	Key     string         `json:"key"`
	Entries []HistoryEntry `json:"entries"`
}

// Diff answers GET /v1/keys/{key}/diff?from=R1&to=R2.
type Diff struct {
	Key     string `json:"key"`
	From    int64  `json:"from"`
	To      int64  `json:"to"`
	Old     *Value `json:"old"` // null: no value at From
	New     *Value `json:"new"`
	Changed bool   `json:"changed"`
}

// RollbackRequest is the body of POST /v1/rollback: one Key, or All.
type RollbackRequest struct {
	Key     string `json:"key,omitempty"`
	All     bool   `json:"all,omitempty"`
	To      int64  `json:"to"`
	Comment string `json:"comment,omitempty"`
	WriteOptions
}

// Schema answers GET /v1/schema.
type Schema struct {
	Revision int64  `json:"revision"`
	Document string `json:"document"`
}

// SchemaRequest is the body of PUT /v1/schema and POST /v1/schema/validate.
type SchemaRequest struct {
	Document string `json:"document"`
	Comment  string `json:"comment,omitempty"`
	WriteOptions
}

// Validation answers POST /v1/schema/validate: whether the document would be
// accepted now, against the values stored now.
type Validation struct {
	Valid    bool    `json:"valid"`
	Problems []Error `json:"problems,omitempty"`
}

// AuditRecord is one change in the audit trail.
type AuditRecord struct {
	ID             string         `json:"id"`
	Revision       int64          `json:"revision"`
	Time           time.Time      `json:"time"`
	Actor          string         `json:"actor"`
	Action         string         `json:"action"`
	Comment        string         `json:"comment,omitempty"`
	Changes        []ChangeRecord `json:"changes,omitempty"`
	SchemaChanged  bool           `json:"schema_changed,omitempty"`
	SchemaRevision int64          `json:"schema_revision,omitempty"`
	// Proposal is the proposal the record is about (or whose approval
	// applied the change: Actor is then its author, Approvers approved it);
	// Forced marks a break-glass change of keys that need approval.
	Proposal  string   `json:"proposal,omitempty"`
	Approvers []string `json:"approvers,omitempty"`
	Forced    bool     `json:"forced,omitempty"`
}

// AuditList answers GET /v1/audit?key=K&before=REV&limit=N, newest first.
type AuditList struct {
	Records []AuditRecord `json:"records"`
}

// Error is the body of every error answer. When several problems were found
// (a batch, a schema), Problems lists each and the top level repeats the first.
type Error struct {
	Code     string  `json:"code"`
	Message  string  `json:"message"`
	Key      string  `json:"key,omitempty"`
	Field    string  `json:"field,omitempty"`
	Problems []Error `json:"problems,omitempty"`
}

// WatchBatch is one Server-Sent Event of GET /v1/watch?prefix=P: every
// change of one revision (one transaction) under the prefix. The event's id
// is the revision; reconnect with Last-Event-ID to resume after it.
type WatchBatch struct {
	Revision int64        `json:"revision"`
	Events   []WatchEvent `json:"events"`
}

// WatchEvent is one key's change. Old and New are JSON forms of the values;
// sensitive values are Redacted.
type WatchEvent struct {
	Kind            string     `json:"kind"` // put | update | delete
	Key             string     `json:"key"`
	Old             any        `json:"old,omitempty"`
	New             any        `json:"new,omitempty"`
	Actor           string     `json:"actor,omitempty"`
	Time            *time.Time `json:"time,omitempty"`
	Comment         string     `json:"comment,omitempty"`
	RequiresRestart bool       `json:"requires_restart,omitempty"`
}

// WatchResync is the data of a "resync" event: the stream could not deliver
// every change (the client fell behind, or asked to resume from a revision
// the node no longer holds). Re-read what you need; the stream goes on
// from Revision.
type WatchResync struct {
	Revision int64  `json:"revision"`
	Reason   string `json:"reason"`
}

// Window is a maintenance window.
type Window struct {
	ID     string    `json:"id"`
	Scope  string    `json:"scope"`
	Reason string    `json:"reason"`
	Author string    `json:"author"`
	Start  time.Time `json:"start"`
	End    time.Time `json:"end"`
}

// MaintenanceRequest is the body of POST /v1/maintenance: open a window on
// Scope now, or at At, for Duration ("30m").
type MaintenanceRequest struct {
	Scope    string     `json:"scope"`
	Reason   string     `json:"reason"`
	Duration string     `json:"duration"`
	At       *time.Time `json:"at,omitempty"`
}

// ExtendRequest is the body of POST /v1/maintenance/{scope}/extend.
type ExtendRequest struct {
	Duration string `json:"duration"`
}

// MaintenanceList answers GET /v1/maintenance.
type MaintenanceList struct {
	Open      []Window `json:"open"`
	Scheduled []Window `json:"scheduled"`
}

// MaintenanceStatus answers GET /v1/maintenance/{scope}.
type MaintenanceStatus struct {
	Scope  string  `json:"scope"`
	Open   bool    `json:"open"`
	Window *Window `json:"window,omitempty"`
}

// Instance is a live service instance as GET /v1/instances shows it.
type Instance struct {
	Service  string            `json:"service"`
	ID       string            `json:"id"`
	Host     string            `json:"host,omitempty"`
	Version  string            `json:"version,omitempty"`
	Labels   map[string]string `json:"labels,omitempty"`
	Started  time.Time         `json:"started"`
	Reported time.Time         `json:"reported_at"`
	Applied  int64             `json:"applied_revision"`
	Lag      int64             `json:"lag"` // revisions its last applied change is behind the cluster's last change; 0: current
	Rejected []Rejection       `json:"rejected,omitempty"`
	Pending  []string          `json:"pending_restart,omitempty"`
	Reads    []string          `json:"reads,omitempty"`
}

// Rejection is a value an instance refused against its own schema.
type Rejection struct {
	Key      string `json:"key"`
	Revision int64  `json:"revision"`
	Reason   string `json:"reason"`
}

// InstanceList answers GET /v1/instances?service=S.
type InstanceList struct {
	Revision  int64      `json:"revision"`
	Instances []Instance `json:"instances"`
}

// Rollout answers GET /v1/rollout/{revision}, and is part of a write's
// answer with ?wait=: which live instances that read the changed keys have
// applied the revision.
type Rollout struct {
	Revision   int64      `json:"revision"`
	Keys       []string   `json:"keys"`
	Converged  bool       `json:"converged"`
	Applied    []Instance `json:"applied"`
	Stragglers []Instance `json:"stragglers"`
	Rejected   []Instance `json:"rejected"` // refused a changed key at or after the revision
}

// Member is one etcd member as GET /v1/cluster shows it.
type Member struct {
	ID          string   `json:"id"` // hex, as etcdctl prints it
	Name        string   `json:"name"`
	PeerURLs    []string `json:"peer_urls"`
	ClientURLs  []string `json:"client_urls"`
	Learner     bool     `json:"learner,omitempty"`
	Leader      bool     `json:"leader,omitempty"`
	Healthy     bool     `json:"healthy"`
	Error       string   `json:"error,omitempty"`
	RaftTerm    uint64   `json:"raft_term,omitempty"`
	RaftIndex   uint64   `json:"raft_index,omitempty"`
	DBSize      int64    `json:"db_size,omitempty"`
	DBSizeInUse int64    `json:"db_size_in_use,omitempty"`
	Version     string   `json:"version,omitempty"`
}

// ClusterStatus answers GET /v1/cluster.
type ClusterStatus struct {
	Members []Member `json:"members"`
	Alarms  []string `json:"alarms,omitempty"` // "NOSPACE on 8e9e05c52164694d"
}

// MemberAddRequest is the body of POST /v1/members.
type MemberAddRequest struct {
	Name    string `json:"name"`
	PeerURL string `json:"peer_url"`
}

// MemberAdded answers POST /v1/members: the flags to start the new member with.
type MemberAdded struct {
	Member              Member `json:"member"`
	InitialCluster      string `json:"initial_cluster"`
	InitialClusterState string `json:"initial_cluster_state"` // "existing"
	// The new member's etcd user and its password (shown once): the new
	// node is started with them (cfgnode --etcd-credential-file).
	EtcdUser     string `json:"etcd_user"`
	EtcdPassword string `json:"etcd_password,omitempty"`
	// Keyring is the cluster's encryption keyring file (its key-encryption
	// keys): the new node is started with it (cfgnode --encryption-keyring).
	Keyring []byte `json:"keyring,omitempty"`
}

// EncryptionKey is a data key that seals sensitive values: never its secret.
type EncryptionKey struct {
	ID      string    `json:"id"`
	Prefix  string    `json:"prefix"` // the key names it seals; "" for every key
	Created time.Time `json:"created"`
	KEK     string    `json:"kek"`     // the key-encryption key that wraps it
	Primary bool      `json:"primary"` // new values of its prefix are sealed with it
	Values  int       `json:"values"`  // values sealed with it now
}

// EncryptionKeys answers GET /v1/encryption-keys: every data key, and how
// many values of sensitive keys are not sealed yet (written before the key
// became sensitive; cfgadm keys reencrypt seals them).
type EncryptionKeys struct {
	Keys  []EncryptionKey `json:"keys"`
	Plain int             `json:"plain"`
}

// RotateKeyRequest is POST /v1/encryption-keys: a new data key for Prefix
// ("" for every key name).
type RotateKeyRequest struct {
	Prefix  string `json:"prefix"`
	Comment string `json:"comment,omitempty"`
}

// ExportKeysRequest is POST /v1/encryption-keys/export: the data keys of
// Prefix, as a keyring file for a service (watch.WithKeyring).
type ExportKeysRequest struct {
	Prefix  string `json:"prefix"`
	Comment string `json:"comment,omitempty"`
}

// ReencryptRequest is POST /v1/encryption-keys/reencrypt.
type ReencryptRequest struct {
	Comment string `json:"comment,omitempty"`
}

// Reencrypted answers POST /v1/encryption-keys/reencrypt.
type Reencrypted struct {
	Resealed int `json:"resealed"` // values re-sealed with the newest key for them
	Audit    int `json:"audit"`    // audit records and index entries whose sealed values were re-sealed in place
}

// DefragResult answers POST /v1/defrag: each member in turn.
type DefragResult struct {
	Members []Member `json:"members"`
}

// FlagEvaluation is one flag's evaluation as OFREP answers it
// (POST /ofrep/v1/evaluate/flags/{key}): a value, absent when the caller's
// code default is the answer (a disabled flag, no default variant), or an
// error code.
type FlagEvaluation struct {
	Key          string          `json:"key"`
	Value        json.RawMessage `json:"value,omitempty"`
	Reason       string          `json:"reason,omitempty"`
	Variant      string          `json:"variant,omitempty"`
	ErrorCode    string          `json:"errorCode,omitempty"`
	ErrorDetails string          `json:"errorDetails,omitempty"`
	Metadata     map[string]any  `json:"metadata,omitempty"`
}

// FlagEvaluationRequest is the body of OFREP's evaluations.
type FlagEvaluationRequest struct {
	Context map[string]any `json:"context"`
}

// FlagUsageList answers GET /v1/flags/usage: each flag the caller may read,
// with its evaluations across the live instances (as they last reported
// them, about once a minute).
type FlagUsageList struct {
	Flags []FlagUsage `json:"flags"`
}

// FlagUsage is one flag's evaluations across the live instances.
type FlagUsage struct {
	Flag        string            `json:"flag"`
	Evaluations map[string]uint64 `json:"evaluations"` // by variant served; "": the caller's default
	Instances   int               `json:"instances"`   // live instances that evaluated it
	Last        *time.Time        `json:"last_evaluated,omitempty"`
}
