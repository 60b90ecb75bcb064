package flags

import (
	"sync/atomic"
	"unsafe"
)

// counter counts without a shared cache line: each goroutine adds to the
// stripe its stack address falls in (goroutine stacks are distinct memory),
// so parallel evaluations of one flag rarely touch the same line.
type counter struct {
	s [8]struct {
		n atomic.Uint64
		_ [56]byte
	}
}

func (c *counter) inc() {
	var x byte
	c.s[(uintptr(unsafe.Pointer(&x))>>13)&7].n.Add(1)
}

func (c *counter) load() uint64 {
	var n uint64
	for i := range c.s {
		n += c.s[i].n.Load()
	}
	return n
}

// Usage is how many times the flag was evaluated, by variant served ("":
// the caller's default: disabled, no default variant, or an error), since
// the process started, across the versions of the flag it compiled
// (KeepUsage).
func (f *Flag) Usage() map[string]uint64 {
	out := make(map[string]uint64, len(f.names)+1)
	for name, n := range f.base {
		out[name] += n
	}
	for i := range f.usage {
		if n := f.usage[i].load(); n > 0 {
			name := ""
			if i < len(f.names) {
				name = f.names[i]
			}
			out[name] += n
		}
	}
	return out
}

// KeepUsage carries the evaluations counted by old's flags over to the
// same flags of s that were compiled anew (a changed definition).
func (s *Set) KeepUsage(old *Set) {
	if old == nil {
		return
	}
	for key, f := range s.Flags {
		if prev, ok := old.Flags[key]; ok && prev != f {
			f.base = prev.Usage()
		}
	}
}
