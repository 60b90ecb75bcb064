package kv

import (
	"encoding/json"
	"strings"
	"time"

	"cfgcluster/cfgerr"
)

// GlobalScope is the maintenance scope that covers every service.
const GlobalScope = "global"

// Window is a maintenance window. The stored end time is the truth: a
// window is open only while now < End. Its key is attached to a lease that
// outlives End, so the key also goes away on its own if every node that
// could close it is gone (etcd restarts a lease's TTL on a leader change,
// so the lease alone guarantees only "eventually").
type Window struct {
	ID     string    `json:"id"`
	Scope  string    `json:"scope"` // "global" or a service name
	Reason string    `json:"reason"`
	Author string    `json:"author"`
	Start  time.Time `json:"start"`
	End    time.Time `json:"end"`
}

// OpenAt reports whether the window is open at t.
func (w *Window) OpenAt(t time.Time) bool { return !t.Before(w.Start) && t.Before(w.End) }

// MaintenanceKey holds the open window of a scope.
func (l Layout) MaintenanceKey(scope string) string { return l.MaintenancePrefix() + scope }

// SchedulePrefix holds windows scheduled to open later (inside the client
// range, so services can show what is coming).
func (l Layout) SchedulePrefix() string { return l.prefix + "v1/schedule/" }

// ElectionPrefix is where nodes elect the one that opens scheduled windows.
func (l Layout) ElectionPrefix() string { return l.prefix + "v1/election/scheduler" }

// InstancesPrefix holds the live service instances.
func (l Layout) InstancesPrefix() string { return l.prefix + "v1/instances/" }

// InstanceKey holds one live instance of a service.
func (l Layout) InstanceKey(service, id string) string {
	return l.InstancesPrefix() + service + "/" + id
}

// Instance is a live service instance and what it has applied.
type Instance struct {
	Service  string            `json:"service"`
	ID       string            `json:"id"`
	Host     string            `json:"host,omitempty"`
	Version  string            `json:"version,omitempty"`
	Labels   map[string]string `json:"labels,omitempty"`
	Started  time.Time         `json:"started"`
	Reported time.Time         `json:"reported_at"`
	Report
}

// Report is what an instance's configuration client reports of itself.
type Report struct {
	Reads    []string    `json:"reads,omitempty"` // key patterns it reads ("session.*", "*"); none: every key
	Applied  int64       `json:"applied_revision"`
	Rejected []Rejection `json:"rejected,omitempty"`
	Pending  []string    `json:"pending_restart,omitempty"` // keys waiting for a restart
	// Flags is how the instance evaluated each feature flag since it
	// started, refreshed about once a minute.
	Flags map[string]FlagUsage `json:"flags,omitempty"`
}

// FlagUsage is one flag's evaluations in one instance: by variant served
// ("": the caller's default), and when it last evaluated the flag.
type FlagUsage struct {
	Evaluations map[string]uint64 `json:"evaluations"`
	Last        time.Time         `json:"last_evaluated"`
}

// Rejection is a value an instance refused against its own schema.
type Rejection struct {
	Key      string `json:"key"`
	Revision int64  `json:"revision"`
	Reason   string `json:"reason"`
}

// ReadsKey reports whether the instance reads key.
func (in *Instance) ReadsKey(key string) bool {
	if len(in.Reads) == 0 {
		return true
	}
	for _, p := range in.Reads {
		if p == "*" || p == key || strings.HasSuffix(p, "*") && strings.HasPrefix(key, strings.TrimSuffix(p, "*")) {
			return true
		}
	}
	return false
}

// EncodeRecord encodes a Window or an Instance.
func EncodeRecord(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

// DecodeWindow decodes a stored window.
func DecodeWindow(data []byte) (*Window, error) {
	var w Window
	if err := json.Unmarshal(data, &w); err != nil {
		return nil, cfgerr.Errorf(cfgerr.Internal, "", "maintenance", "stored window is corrupt: %v", err)
	}
	return &w, nil
}

// DecodeInstance decodes a stored instance.
func DecodeInstance(data []byte) (*Instance, error) {
	var in Instance
	if err := json.Unmarshal(data, &in); err != nil {
		return nil, cfgerr.Errorf(cfgerr.Internal, "", "instance", "stored instance is corrupt: %v", err)
	}
	return &in, nil
}
