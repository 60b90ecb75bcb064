package kv_test

import (
	"context"
	"fmt"

	"cfgcluster/cfgerr"
	"cfgcluster/etcdtest"
	"cfgcluster/kv"
)

// A store over etcd: a schema, a validated change with its audit record, a
// change a rule refuses, and the history.
func ExampleStore() {
	etcd, stop, err := etcdtest.Scratch() // a throwaway etcd member
	if err != nil {
		panic(err)
	}
	defer stop()

	ctx := context.Background()
	s := kv.New(etcd)
	_, err = s.SetSchema(ctx, kv.Meta{Actor: "ops"}, []byte(`
keys:
  session.idle_timeout:     {type: duration, default: 15m}
  session.absolute_timeout: {type: duration, default: 8h}
rules:
  - {name: idle-within-absolute, expr: session.idle_timeout <= session.absolute_timeout}
`))
	if err != nil {
		panic(err)
	}
	text := "20m"
	r, err := s.Apply(ctx, kv.Meta{Actor: "alice", Action: kv.ActionSet, Comment: "longer sessions"},
		[]kv.Write{{Key: "session.idle_timeout", Text: &text}})
	fmt.Println(r.Changes[0].Key, r.Changes[0].New, err)

	text = "9h"
	_, err = s.Apply(ctx, kv.Meta{Actor: "alice"}, []kv.Write{{Key: "session.idle_timeout", Text: &text}})
	fmt.Println(cfgerr.CodeOf(err), cfgerr.First(err).Field)

	h, _ := s.History(ctx, "session.idle_timeout", 0)
	fmt.Println(len(h), h[0].Actor, h[0].Comment)
	// Output:
	// session.idle_timeout 20m0s <nil>
	// invalid rule idle-within-absolute
	// 1 alice longer sessions
}
