package flags

// usageStripes is how many stripes each of a flag's counters has: 8 cache
// lines a variant.
const usageStripes = 8

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
		if n := f.usage[i].Load(); n > 0 {
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
