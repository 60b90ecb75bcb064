// Package stripe is a counter that parallel goroutines increment without
// sharing a cache line: each adds to the stripe its stack address falls in
// (goroutine stacks are distinct memory), and a read sums the stripes.
package stripe

import (
	"sync/atomic"
	"unsafe"
)

type slot struct {
	n atomic.Uint64
	_ [56]byte // a cache line of its own
}

// Counter is a striped counter; make one with New.
type Counter struct {
	s    []slot
	mask uintptr
}

// New returns a counter of stripes stripes (rounded up to a power of two):
// more stripes, fewer collisions, 64 bytes each.
func New(stripes int) *Counter {
	n := 1
	for n < stripes {
		n <<= 1
	}
	return &Counter{s: make([]slot, n), mask: uintptr(n - 1)}
}

// Inc adds one.
func (c *Counter) Inc() {
	var x byte
	c.s[(uintptr(unsafe.Pointer(&x))>>13)&c.mask].n.Add(1)
}

// Load returns the count.
func (c *Counter) Load() uint64 {
	var n uint64
	for i := range c.s {
		n += c.s[i].n.Load()
	}
	return n
}
