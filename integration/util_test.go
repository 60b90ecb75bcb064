package integration

import (
	"encoding/json"
	"strconv"
	"testing"
)

func itoa(i int64) string { return strconv.FormatInt(i, 10) }

func decodeJSON(t *testing.T, s string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(s), v); err != nil {
		t.Fatalf("decode %q: %v", s, err)
	}
}
