package watch_test

import (
	"context"
	"fmt"

	"cfgcluster/etcdtest"
	"cfgcluster/kv"
	"cfgcluster/watch"
)

// A service's view of the configuration: typed reads from the cache, and a
// subscriber told of every change.
func ExampleClient() {
	etcd, stop, err := etcdtest.Scratch() // a throwaway etcd member
	if err != nil {
		panic(err)
	}
	defer stop()
	ctx := context.Background()
	store := kv.New(etcd)
	if _, err := store.SetSchema(ctx, kv.Meta{}, []byte("keys:\n  log.level: {type: enum, values: [debug, info, warn], default: info}\n")); err != nil {
		panic(err)
	}

	cfg, err := watch.New(ctx, etcd)
	if err != nil {
		panic(err)
	}
	defer cfg.Close()
	changed := make(chan watch.Event, 1)
	cfg.Subscribe("log.*", watch.HandlerFuncs{UpdateFunc: func(e watch.Event) { changed <- e }, PutFunc: func(e watch.Event) { changed <- e }})
	fmt.Println(cfg.String("log.level", "?")) // the schema default

	text := "debug"
	r, _ := store.Apply(ctx, kv.Meta{Actor: "alice"}, []kv.Write{{Key: "log.level", Text: &text}})
	e := <-changed
	fmt.Println(e.Key, e.Old, "→", e.New, "by", e.Actor)
	cfg.WaitRevision(ctx, r.Revision)
	fmt.Println(cfg.String("log.level", "?"))
	// Output:
	// info
	// log.level info → debug by alice
	// debug
}
