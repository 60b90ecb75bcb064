package api

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"cfgcluster/cfgerr"
)

// WatchOption changes what Watch does.
type WatchOption func(*watchOptions)

type watchOptions struct {
	open      func()
	proposals func(*Proposal) error
}

// WithProposals also streams the proposals made or decided that touch a key
// under the prefix and that the caller may read (`event: proposal`); fn is
// given each, and nil when some were lost (re-list them with Proposals).
// They are live only: a resumed stream does not replay them.
func WithProposals(fn func(*Proposal) error) WatchOption {
	return func(o *watchOptions) { o.proposals = fn }
}

// OnOpen calls fn once the node has accepted the stream: an error after it
// is a stream that broke, not one that never opened.
func OnOpen(fn func()) WatchOption { return func(o *watchOptions) { o.open = fn } }

// Watch streams the changes under prefix from GET /v1/watch until ctx is
// done, the node ends the stream (nil) or fn returns an error. With since > 0
// it resumes after that revision (Last-Event-ID). fn gets each batch;
// resync, when not nil, gets resync notices.
func (c *Client) Watch(ctx context.Context, prefix string, since int64, fn func(WatchBatch) error, resync func(WatchResync) error, opts ...WatchOption) error {
	var o watchOptions
	for _, opt := range opts {
		opt(&o)
	}
	q := url.Values{"prefix": {prefix}}
	if o.proposals != nil {
		q.Set("proposals", "true")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.Endpoint+"/v1/watch?"+q.Encode(), nil)
	if err != nil {
		return cfgerr.Errorf(cfgerr.Invalid, "", "endpoint", "%v", err)
	}
	req.Header.Set("Accept", "text/event-stream")
	if since > 0 {
		req.Header.Set("Last-Event-ID", strconv.FormatInt(since, 10))
	}
	resp, err := c.stream(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	defer resp.Body.Close()
	if o.open != nil {
		o.open()
	}
	return ReadEvents(resp.Body, func(event string, data []byte) error {
		switch event {
		case "change":
			var b WatchBatch
			if err := json.Unmarshal(data, &b); err != nil {
				return cfgerr.Errorf(cfgerr.Internal, "", "", "malformed change event: %v", err)
			}
			return fn(b)
		case "resync":
			var r WatchResync
			if err := json.Unmarshal(data, &r); err != nil {
				return cfgerr.Errorf(cfgerr.Internal, "", "", "malformed resync event: %v", err)
			}
			if resync != nil {
				return resync(r)
			}
		case "proposal":
			if o.proposals != nil {
				var p Proposal
				if err := json.Unmarshal(data, &p); err != nil {
					return cfgerr.Errorf(cfgerr.Internal, "", "", "malformed proposal event: %v", err)
				}
				return o.proposals(&p)
			}
		case "proposals-resync":
			if o.proposals != nil {
				return o.proposals(nil)
			}
		}
		return nil
	})
}

// ReadEvents parses a Server-Sent Events stream, calling fn for each event
// with its type ("message" when unnamed) and data. Comments are skipped.
func ReadEvents(r io.Reader, fn func(event string, data []byte) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	event, data, has := "", []byte(nil), false
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if has {
				if event == "" {
					event = "message"
				}
				if err := fn(event, data); err != nil {
					return err
				}
			}
			event, data, has = "", nil, false
		case strings.HasPrefix(line, ":"):
		case strings.HasPrefix(line, "event:"):
			event = strings.TrimSpace(strings.TrimPrefix(line, "event:"))
		case strings.HasPrefix(line, "data:"):
			if has {
				data = append(data, '\n')
			}
			data = append(data, strings.TrimPrefix(strings.TrimPrefix(line, "data:"), " ")...)
			has = true
		}
	}
	if err := sc.Err(); err != nil && !strings.Contains(err.Error(), "context canceled") {
		return &cfgerr.Error{Code: cfgerr.Unavailable, Message: "the stream broke: " + err.Error(), Err: err}
	}
	return nil
}
