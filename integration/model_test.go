package integration

import (
	"testing"

	"github.com/anishathalye/porcupine"
)

// The register model refuses what a broken store would do: a stale read
// after a completed write, and a read of a value never written; it accepts
// an unacknowledged write whose effect is seen late.
func TestRegisterModel(t *testing.T) {
	w := func(v string, call, ret int64) porcupine.Operation {
		return porcupine.Operation{Input: regInput{write: true, value: v}, Call: call, Return: ret}
	}
	r := func(v string, call, ret int64) porcupine.Operation {
		return porcupine.Operation{Input: regInput{}, Output: v, Call: call, Return: ret}
	}
	for name, tc := range map[string]struct {
		ops []porcupine.Operation
		ok  bool
	}{
		"fine":               {[]porcupine.Operation{w("a", 0, 10), r("a", 11, 20), w("b", 21, 30), r("b", 31, 40)}, true},
		"stale read":         {[]porcupine.Operation{w("a", 0, 10), w("b", 11, 20), r("a", 21, 30)}, false},
		"never written":      {[]porcupine.Operation{w("a", 0, 10), r("z", 11, 20)}, false},
		"unknown write seen": {[]porcupine.Operation{w("a", 0, 10), w("b", 11, 1<<62), r("a", 20, 30), r("b", 40, 50)}, true},
		"lost ack":           {[]porcupine.Operation{w("a", 0, 10), w("b", 11, 20), r("a", 30, 40), r("a", 41, 50)}, false},
	} {
		if got := porcupine.CheckOperations(register, tc.ops); got != tc.ok {
			t.Errorf("%s: linearizable = %v, want %v", name, got, tc.ok)
		}
	}
}
