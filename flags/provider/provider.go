// Package provider is an OpenFeature provider (github.com/open-feature/go-sdk)
// over cfgcluster's watch client: a service's OpenFeature calls evaluate
// the cluster's flags in-process, from memory, and hear of their changes
// within milliseconds of the write, not at a polling interval.
//
//	c, _ := watch.New(ctx, etcd, watch.WithPrefix(...))
//	p := provider.New(c)
//	defer p.Shutdown()
//	openfeature.SetProviderAndWait(p)
//	on, _ := openfeature.NewDefaultClient().BooleanValue(ctx, "new-checkout", false, evalCtx)
//
// Events: PROVIDER_READY once the client has listed the cluster (a client
// serving its snapshot file is ready too, and stale), PROVIDER_CONFIGURATION
// _CHANGED with the keys of the flags each change touched (every flag when
// the shared evaluators change), PROVIDER_STALE while etcd has not
// confirmed the client current for longer than WithStaleAfter, and
// PROVIDER_READY again once it has.
package provider

import (
	"context"
	"maps"
	"slices"
	"sync"
	"time"

	of "github.com/open-feature/go-sdk/openfeature"

	"cfgcluster/flags"
	"cfgcluster/schema"
	"cfgcluster/watch"
)

// Provider is an OpenFeature FeatureProvider, StateHandler and EventHandler.
type Provider struct {
	c          *watch.Client
	staleAfter time.Duration
	events     chan of.Event

	mu    sync.Mutex
	subs  []*watch.Subscription
	stop  chan struct{}
	wg    sync.WaitGroup
	stale bool
}

// Option configures a Provider.
type Option func(*Provider)

// WithStaleAfter sets how long etcd may not confirm the client current
// before the provider says PROVIDER_STALE (default 10 s).
func WithStaleAfter(d time.Duration) Option { return func(p *Provider) { p.staleAfter = d } }

// New returns a provider over c; Init (which the SDK calls) starts its
// events and Shutdown stops them. The client stays the caller's to close.
func New(c *watch.Client, opts ...Option) *Provider {
	p := &Provider{c: c, staleAfter: 10 * time.Second, events: make(chan of.Event, 256)}
	for _, o := range opts {
		o(p)
	}
	return p
}

// Metadata names the provider.
func (p *Provider) Metadata() of.Metadata { return of.Metadata{Name: "cfgcluster"} }

// Hooks: none.
func (p *Provider) Hooks() []of.Hook { return nil }

// EventChannel is where the provider's events go.
func (p *Provider) EventChannel() <-chan of.Event { return p.events }

// Init subscribes to the flags' changes and starts watching the client's
// freshness. The client has listed (or loaded its snapshot) already.
func (p *Provider) Init(of.EvaluationContext) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stop != nil {
		return nil
	}
	p.stop = make(chan struct{})
	h := changes{p}
	p.subs = []*watch.Subscription{p.c.Subscribe(schema.FlagsNamespace, h), p.c.SubscribeFlags("*", h)}
	p.wg.Add(1)
	go p.watchFreshness(p.stop)
	return nil
}

// Shutdown stops the provider's events.
func (p *Provider) Shutdown() {
	p.mu.Lock()
	stop, subs := p.stop, p.subs
	p.stop, p.subs = nil, nil
	p.mu.Unlock()
	if stop == nil {
		return
	}
	for _, s := range subs {
		p.c.Unsubscribe(s)
	}
	close(stop)
	p.wg.Wait()
}

func (p *Provider) emit(t of.EventType, d of.ProviderEventDetails) {
	p.mu.Lock()
	stop := p.stop
	p.mu.Unlock()
	select {
	case p.events <- of.Event{ProviderName: "cfgcluster", EventType: t, ProviderEventDetails: d}:
	case <-stop:
	}
}

// watchFreshness says PROVIDER_STALE when etcd has not confirmed the client
// current for staleAfter, and PROVIDER_READY when it has again.
func (p *Provider) watchFreshness(stop chan struct{}) {
	defer p.wg.Done()
	tick := time.NewTicker(min(time.Second, p.staleAfter/4))
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		stale := !p.c.HasSynced() || p.c.Staleness() > p.staleAfter
		if stale == p.stale {
			continue
		}
		p.stale = stale
		if stale {
			p.emit(of.ProviderStale, of.ProviderEventDetails{Message: "etcd has not confirmed the flags current for " + p.c.Staleness().Round(time.Second).String()})
		} else {
			p.emit(of.ProviderReady, of.ProviderEventDetails{Message: "the flags are current again"})
		}
	}
}

// changes turns each revision's flag changes into one event.
type changes struct{ p *Provider }

func (h changes) OnPut(watch.Event)    {}
func (h changes) OnUpdate(watch.Event) {}
func (h changes) OnDelete(watch.Event) {}

func (h changes) OnBatch(b watch.Batch) {
	keys := map[string]bool{}
	for _, e := range b.Events {
		if k, ok := schema.FlagKeyOf(e.Key); ok {
			keys[k] = true
		} else if e.Key == schema.FlagsNamespace {
			for k := range h.p.c.Flags().Flags {
				keys[k] = true // the evaluators: every flag may answer differently
			}
		}
	}
	if len(keys) > 0 {
		h.p.emit(of.ProviderConfigChange, of.ProviderEventDetails{Message: "flags changed", FlagChanges: slices.Sorted(maps.Keys(keys)),
			EventMetadata: map[string]any{"revision": b.Revision}})
	}
}

// detail maps an evaluation to OpenFeature's.
func detail(d flags.Detail) of.ProviderResolutionDetail {
	out := of.ProviderResolutionDetail{Reason: of.Reason(d.Reason), Variant: d.Variant, FlagMetadata: of.FlagMetadata(d.Metadata)}
	switch d.ErrorCode {
	case "":
	case flags.FlagNotFound:
		out.ResolutionError = of.NewFlagNotFoundResolutionError(d.ErrorMessage)
	case flags.ParseError:
		out.ResolutionError = of.NewParseErrorResolutionError(d.ErrorMessage)
	case flags.TypeMismatch:
		out.ResolutionError = of.NewTypeMismatchResolutionError(d.ErrorMessage)
	case flags.InvalidContext:
		out.ResolutionError = of.NewInvalidContextResolutionError(d.ErrorMessage)
	default:
		out.ResolutionError = of.NewGeneralResolutionError(d.ErrorMessage)
	}
	return out
}

func resolve[T bool | string | float64 | int64 | any](p *Provider, ctx context.Context, flag string, def T, evalCtx of.FlattenedContext) of.GenericResolutionDetail[T] {
	v, d := flags.As(p.c.EvaluateFlag(ctx, flag, evalCtx), def)
	return of.GenericResolutionDetail[T]{Value: v, ProviderResolutionDetail: detail(d)}
}

// BooleanEvaluation evaluates a boolean flag.
func (p *Provider) BooleanEvaluation(ctx context.Context, flag string, def bool, evalCtx of.FlattenedContext) of.BoolResolutionDetail {
	return resolve(p, ctx, flag, def, evalCtx)
}

// StringEvaluation evaluates a string flag.
func (p *Provider) StringEvaluation(ctx context.Context, flag string, def string, evalCtx of.FlattenedContext) of.StringResolutionDetail {
	return resolve(p, ctx, flag, def, evalCtx)
}

// FloatEvaluation evaluates a number flag.
func (p *Provider) FloatEvaluation(ctx context.Context, flag string, def float64, evalCtx of.FlattenedContext) of.FloatResolutionDetail {
	return resolve(p, ctx, flag, def, evalCtx)
}

// IntEvaluation evaluates a number flag as an integer.
func (p *Provider) IntEvaluation(ctx context.Context, flag string, def int64, evalCtx of.FlattenedContext) of.IntResolutionDetail {
	return resolve(p, ctx, flag, def, evalCtx)
}

// ObjectEvaluation evaluates an object flag.
func (p *Provider) ObjectEvaluation(ctx context.Context, flag string, def any, evalCtx of.FlattenedContext) of.InterfaceResolutionDetail {
	return resolve(p, ctx, flag, def, evalCtx)
}
