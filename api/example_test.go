package api_test

import (
	"context"
	"fmt"
	"os"
	"strings"

	"cfgcluster/api"
	"cfgcluster/cfgerr"
	"cfgcluster/node"
)

// The Go client of a node's HTTP API: a change, a refusal naming the key,
// and the value read back.
func ExampleClient() {
	dir, _ := os.MkdirTemp("", "api-example")
	defer os.RemoveAll(dir)
	schema := dir + "/schema.yaml"
	os.WriteFile(schema, []byte("keys:\n  taskqueue.max_workers: {type: int, default: 8, min: 1, max: 256}\n"), 0o644)
	n, err := node.Start(context.Background(), node.Config{DataDir: dir + "/data", APIAddr: "127.0.0.1:0",
		ListenClientURLs: []string{"http://127.0.0.1:0"}, ListenPeerURLs: []string{"http://127.0.0.1:0"}, SchemaFile: schema})
	if err != nil {
		panic(err)
	}
	defer n.Close()

	// The node made an admin token at its first start; with it, a token
	// for alice, who may read and write.
	admin, _ := os.ReadFile(n.AdminTokenFile())
	ctx := context.Background()
	tok, err := api.NewClient(n.APIURL(), strings.TrimSpace(string(admin))).CreateToken(ctx,
		api.TokenRequest{Name: "alice", Roles: []string{"editor"}})
	if err != nil {
		panic(err)
	}
	c := api.NewClient(n.APIURL(), tok.Token)
	r, err := c.Set(ctx, "taskqueue.max_workers", api.SetRequest{Value: 32, Comment: "sale weekend"})
	fmt.Println(r.Changes[0].Old, "→", r.Changes[0].New, err)

	_, err = c.Set(ctx, "taskqueue.max_workers", api.SetRequest{Value: 1000})
	fmt.Println(cfgerr.CodeOf(err), cfgerr.First(err).Key)

	v, _ := c.Get(ctx, "taskqueue.max_workers", 0)
	fmt.Println(v.Value, v.Source, v.Actor)
	// Output:
	// <nil> → 32 <nil>
	// invalid taskqueue.max_workers
	// 32 cluster alice
}
