package node

import (
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
)

// The sync messages decode what their encoding wrote, and skip fields they
// do not know (a newer client's).
func TestSyncMessages(t *testing.T) {
	b, _ := (&syncRequest{providerID: "p", selector: "s"}).marshal()
	b = protowire.AppendTag(b, 9, protowire.VarintType)
	b = protowire.AppendVarint(b, 7)
	b = protowire.AppendTag(b, 10, protowire.BytesType)
	b = protowire.AppendString(b, "later")
	var r syncRequest
	if err := r.unmarshal(b); err != nil || r.providerID != "p" || r.selector != "s" {
		t.Fatalf("%+v %v", r, err)
	}
	if err := r.unmarshal([]byte{0x0a, 0x05, 'x'}); err == nil {
		t.Fatal("a truncated field decoded")
	}
}
