package node_test

import (
	"context"
	"encoding/json"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"

	"cfgcluster/api"
	"cfgcluster/etcdtest"
	"cfgcluster/node"
)

// rawCodec sends and receives messages as the bytes they are: the test
// reads the wire format itself, as sync.proto numbers its fields.
type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }
func (rawCodec) Marshal(v any) ([]byte, error) {
	return *(v.(*[]byte)), nil
}
func (rawCodec) Unmarshal(b []byte, v any) error {
	*(v.(*[]byte)) = append([]byte(nil), b...)
	return nil
}

// fetchAll calls FetchAllFlags with token (none: "") and returns the flag
// file of field 1 of the answer.
func fetchAll(ctx context.Context, t *testing.T, addr, token string) (map[string]any, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithDefaultCallOptions(grpc.ForceCodec(rawCodec{})))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	}
	req := protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), "node-test")
	var resp []byte
	if err := conn.Invoke(ctx, "/flagd.sync.v1.FlagSyncService/FetchAllFlags", &req, &resp); err != nil {
		return nil, err
	}
	num, typ, n := protowire.ConsumeTag(resp)
	if num != 1 || typ != protowire.BytesType {
		t.Fatalf("answer: field %d type %d", num, typ)
	}
	doc, _ := protowire.ConsumeBytes(resp[n:])
	var out map[string]any
	return out, json.Unmarshal(doc, &out)
}

// flagd's sync port answers a token's readable flags, and nothing without
// one (unless --flagd-sync-anonymous).
func TestFlagdSyncNeedsAToken(t *testing.T) {
	addr := etcdtest.FreeAddr(t)
	_, c := startNode(t, "../examples/schema.yaml", func(cfg *node.Config) { cfg.FlagdSyncAddr = addr })
	ctx := bg(t)
	for key, def := range map[string]string{
		"flags.new-checkout": `{"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off"}`,
		"flags.billing-v2":   `{"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"}`,
	} {
		if _, err := c.Set(ctx, key, api.SetRequest{Text: str(def)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := fetchAll(ctx, t, addr, ""); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("without a token: %v", err)
	}
	if _, err := fetchAll(ctx, t, addr, "cfgt1_nobody_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("with a bad token: %v", err)
	}
	if err := c.PutRole(ctx, api.Role{Name: "checkout-flags", Grants: []api.Grant{{Verbs: []string{"read"}, Prefix: "flags.new-"}}}); err != nil {
		t.Fatal(err)
	}
	tok, err := c.CreateToken(ctx, api.TokenRequest{Name: "web", Subject: "web-app", Roles: []string{"checkout-flags"}})
	if err != nil {
		t.Fatal(err)
	}
	doc, err := fetchAll(ctx, t, addr, tok.Token)
	if err != nil {
		t.Fatal(err)
	}
	fl := doc["flags"].(map[string]any)
	if len(fl) != 1 || fl["new-checkout"] == nil {
		t.Fatalf("the token's flags: %v", doc)
	}
	if doc, err = fetchAll(ctx, t, addr, c.Token); err != nil || len(doc["flags"].(map[string]any)) != 2 {
		t.Fatalf("an admin's: %v %v", doc, err)
	}
}
