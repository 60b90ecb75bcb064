package main

import (
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/urfave/cli/v2"

	"cfgcluster/api"
	"cfgcluster/cfgerr"
)

func watchCommand() *cli.Command {
	return &cli.Command{
		Name:         "watch",
		Usage:        "print changes under a prefix as they happen, until interrupted; reconnects when the node goes away",
		ArgsUsage:    "[PREFIX]",
		Flags:        []cli.Flag{&cli.Int64Flag{Name: "since", Usage: "first replay the changes after this revision"}, retryForFlag},
		BashComplete: completeKeys,
		Action: func(c *cli.Context) error {
			if c.NArg() > 1 {
				return usageError("watch takes at most one PREFIX")
			}
			return watchChanges(c, c.Args().First(), c.Int64("since"), nil)
		},
	}
}

var retryForFlag = &cli.DurationFlag{Name: "retry-for", Value: 2 * time.Minute, Usage: "how long to keep reconnecting once the stream is lost, before giving up (exit 5)"}

// watchChanges prints the changes under prefix after revision since (keep,
// when set, picks the keys) until interrupted. When the stream ends or
// breaks it reconnects from the last revision it printed (Last-Event-ID),
// saying so, for up to --retry-for; then it gives up with exit 5.
func watchChanges(c *cli.Context, prefix string, since int64, keep func(key string) bool) error {
	out := stdout(c)
	cl := client(c)
	retryFor := c.Duration("retry-for")
	last := since
	header := false
	onBatch := func(b api.WatchBatch) error {
		last = b.Revision
		if structured(c) {
			return json.NewEncoder(out).Encode(b)
		}
		if !header && !c.Bool("no-headers") {
			fmt.Fprintf(out, "%-20s  %-8s  %-6s  %-28s  %-24s  %-12s  %s\n", "TIME", "REVISION", "KIND", "KEY", "CHANGE", "BY", "COMMENT")
			header = true
		}
		for _, e := range b.Events {
			if keep != nil && !keep(e.Key) {
				continue
			}
			at := "-"
			if e.Time != nil {
				at = e.Time.Local().Format("2006-01-02 15:04:05")
			}
			change := cut(text(e.Old), 40) + " → " + cut(text(e.New), 40)
			if e.Kind == "delete" {
				change = cut(text(e.Old), 40) + " → (default " + cut(text(e.New), 40) + ")"
			}
			fmt.Fprintf(out, "%-20s  %-8d  %-6s  %-28s  %-24s  %-12s  %s\n", at, b.Revision, e.Kind, e.Key, change, text(e.Actor), text(e.Comment))
		}
		return nil
	}
	onResync := func(r api.WatchResync) error {
		last = r.Revision
		fmt.Fprintf(os.Stderr, "cfgadm: resync (%s): changes were missed; state is current as of revision %d\n", r.Reason, r.Revision)
		return nil
	}
	var lostAt time.Time // when the stream was lost; zero while it is up
	for attempt := 0; ; attempt++ {
		opened := false
		err := cl.Watch(c.Context, prefix, last, onBatch, onResync, api.OnOpen(func() {
			if !lostAt.IsZero() {
				fmt.Fprintf(os.Stderr, "cfgadm: reconnected to %s\n", cl.Endpoint)
			}
			opened, lostAt = true, time.Time{}
		}))
		if c.Context.Err() != nil {
			return nil
		}
		if err != nil && (!opened && attempt == 0 || cfgerr.CodeOf(err) != cfgerr.Unavailable) {
			return err // the first connection failed, or the node refused: say why at once
		}
		if opened {
			lostAt = time.Now()
			why := "the node ended the stream"
			if err != nil {
				why = err.Error()
			}
			fmt.Fprintf(os.Stderr, "cfgadm: lost the stream (%s); reconnecting from revision %d\n", why, last)
		}
		if time.Since(lostAt) > retryFor {
			return cfgerr.Errorf(cfgerr.Unavailable, "", "watch", "gave up after %s without the stream from %s (last revision %d): %v", retryFor, cl.Endpoint, last, err)
		}
		select {
		case <-c.Context.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
}
