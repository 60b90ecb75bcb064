package watch_test

import "runtime"

func runtimeNumGoroutine() int { return runtime.NumGoroutine() }
