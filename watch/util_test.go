package watch_test

import (
	"runtime"
	"testing"
)

func runtimeNumGoroutine() int { return runtime.NumGoroutine() }

// setupB is setup for benchmarks.
func setupB(b *testing.B) *env { return setup(b) }
