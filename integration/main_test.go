package integration

import (
	"os"
	"testing"
)

// TestMain removes the binaries the tests built, whatever the outcome.
func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}
