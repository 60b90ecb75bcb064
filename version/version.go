// Package version tells which build of cfgcluster is running: the module
// version and VCS revision Go stamped into the binary, and the API version
// the node serves.
package version

import (
	"runtime/debug"
	"sync"
)

// API is the version of the HTTP API (its routes are under /v1/). A client
// speaks to any node whose API it knows.
const API = "v1"

var once = sync.OnceValue(func() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := bi.Main.Version
	var rev, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "-dirty"
			}
		}
	}
	if v == "" || v == "(devel)" {
		v = "devel"
	}
	if rev != "" && v == "devel" {
		v += "+" + rev[:min(12, len(rev))] + dirty
	}
	return v
})

// Build is this binary's version: a module version (v1.2.3) or
// devel+<commit> for a build from a checkout, -dirty when it had changes.
func Build() string { return once() }
