package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"

	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"cfgcluster/auth"
	"cfgcluster/schema"
)

// flagd's sync protocol (flagd.sync.v1.FlagSyncService, flagd-schemas'
// sync.proto): flagd itself, and flagd's in-process providers in every
// language, take their flags from a node. SyncFlags sends the whole flag
// file (flagd's format) at once and again after every change of a flag;
// FetchAllFlags sends it once. It is served on its own port
// (--flagd-sync-addr; flagd's providers speak gRPC, not HTTP/1). Callers
// present a token as gRPC metadata (authorization: Bearer TOKEN) and get
// the flags it may read; flagd's providers cannot, so
// --flagd-sync-anonymous serves every flag to whoever reaches the port, as
// flagd's own sync does.
//
// The messages are few and small, and their generated Go code
// (buf.build/gen/go/open-feature/flagd) is not on every module proxy: they
// are encoded here with protowire, field by field as sync.proto numbers
// them.

// syncRequest is SyncFlagsRequest and FetchAllFlagsRequest: provider_id = 1,
// selector = 2 (the Flagd-Selector header takes its place).
type syncRequest struct{ providerID, selector string }

// flagsResponse is SyncFlagsResponse and FetchAllFlagsResponse:
// flag_configuration = 1, and for SyncFlags sync_context = 2 (a Struct).
type flagsResponse struct {
	config  string
	context *structpb.Struct
}

// metadataRequest is GetMetadataRequest (no fields); metadataResponse is
// GetMetadataResponse: metadata = 2 (a Struct).
type (
	metadataRequest  struct{}
	metadataResponse struct{ metadata *structpb.Struct }
)

type wireMessage interface {
	marshal() ([]byte, error)
	unmarshal([]byte) error
}

func (r *syncRequest) marshal() ([]byte, error) {
	var b []byte
	b = appendString(b, 1, r.providerID)
	return appendString(b, 2, r.selector), nil
}

func (r *syncRequest) unmarshal(b []byte) error {
	return consumeFields(b, func(num protowire.Number, v []byte) {
		switch num {
		case 1:
			r.providerID = string(v)
		case 2:
			r.selector = string(v)
		}
	})
}

func (r *flagsResponse) marshal() ([]byte, error) {
	b := appendString(nil, 1, r.config)
	return appendStruct(b, 2, r.context)
}

func (r *flagsResponse) unmarshal(b []byte) error {
	return consumeFields(b, func(num protowire.Number, v []byte) {
		if num == 1 {
			r.config = string(v)
		}
	})
}

func (*metadataRequest) marshal() ([]byte, error) { return nil, nil }
func (*metadataRequest) unmarshal([]byte) error   { return nil }
func (r *metadataResponse) marshal() ([]byte, error) {
	return appendStruct(nil, 2, r.metadata)
}
func (r *metadataResponse) unmarshal([]byte) error { return nil }

func appendString(b []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

func appendStruct(b []byte, num protowire.Number, s *structpb.Struct) ([]byte, error) {
	if s == nil {
		return b, nil
	}
	m, err := proto.Marshal(s)
	if err != nil {
		return nil, err
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, m), nil
}

// consumeFields calls f with each length-delimited field, skipping others.
func consumeFields(b []byte, f func(protowire.Number, []byte)) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		if typ == protowire.BytesType {
			v, m := protowire.ConsumeBytes(b)
			if m < 0 {
				return protowire.ParseError(m)
			}
			f(num, v)
			b = b[m:]
			continue
		}
		m := protowire.ConsumeFieldValue(num, typ, b)
		if m < 0 {
			return protowire.ParseError(m)
		}
		b = b[m:]
	}
	return nil
}

// syncCodec encodes the sync messages; it is the server's only codec.
type syncCodec struct{}

func (syncCodec) Name() string { return "proto" }

func (syncCodec) Marshal(v any) ([]byte, error) {
	m, ok := v.(wireMessage)
	if !ok {
		return nil, fmt.Errorf("flagd sync: cannot encode %T", v)
	}
	return m.marshal()
}

func (syncCodec) Unmarshal(b []byte, v any) error {
	m, ok := v.(wireMessage)
	if !ok {
		return fmt.Errorf("flagd sync: cannot decode %T", v)
	}
	return m.unmarshal(b)
}

var _ encoding.Codec = syncCodec{}

// flagSync serves the protocol for a node.
type flagSync struct {
	n         *Node
	anonymous bool
}

// flagSyncService is what the service description's handlers call.
type flagSyncService interface {
	flagFile(ctx context.Context) (string, error)
}

var flagSyncDesc = grpc.ServiceDesc{
	ServiceName: "flagd.sync.v1.FlagSyncService",
	HandlerType: (*flagSyncService)(nil),
	Methods: []grpc.MethodDesc{
		{MethodName: "FetchAllFlags", Handler: func(srv any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			if err := dec(&syncRequest{}); err != nil {
				return nil, err
			}
			doc, err := srv.(*flagSync).flagFile(ctx)
			if err != nil {
				return nil, err
			}
			return &flagsResponse{config: doc}, nil
		}},
		{MethodName: "GetMetadata", Handler: func(srv any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			if err := dec(&metadataRequest{}); err != nil {
				return nil, err
			}
			if _, err := srv.(*flagSync).principal(ctx); err != nil {
				return nil, err
			}
			md, _ := structpb.NewStruct(srv.(*flagSync).n.watch.Flags().Metadata)
			return &metadataResponse{metadata: md}, nil
		}},
	},
	Streams: []grpc.StreamDesc{{StreamName: "SyncFlags", ServerStreams: true, Handler: func(srv any, stream grpc.ServerStream) error {
		if err := stream.RecvMsg(&syncRequest{}); err != nil {
			return err
		}
		return srv.(*flagSync).syncFlags(stream)
	}}},
	Metadata: "flagd/sync/v1/sync.proto",
}

// principal is the caller: its token's, or nobody's with --flagd-sync-anonymous.
func (s *flagSync) principal(ctx context.Context) (*auth.Principal, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	var token string
	if v := md.Get("authorization"); len(v) > 0 {
		scheme, t, ok := strings.Cut(v[0], " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") {
			return nil, status.Error(codes.Unauthenticated, "authorization: give Bearer TOKEN")
		}
		token = strings.TrimSpace(t)
	}
	if token == "" {
		if s.anonymous {
			return nil, nil
		}
		return nil, status.Error(codes.Unauthenticated, "a token is needed (metadata authorization: Bearer TOKEN); --flagd-sync-anonymous serves every flag without one")
	}
	who, err := s.n.auth.Authenticate(ctx, token)
	if err != nil {
		return nil, status.Error(codes.Unauthenticated, err.Error())
	}
	return who, nil
}

// flagFile is the flags the caller may read, as one flagd flag file.
func (s *flagSync) flagFile(ctx context.Context) (string, error) {
	who, err := s.principal(ctx)
	if err != nil {
		return "", err
	}
	doc, err := s.n.watch.Flags().Document(func(key string) bool {
		return who == nil || who.Can(auth.Read, schema.FlagsNamespace+"."+key)
	})
	if err != nil {
		return "", status.Error(codes.Internal, err.Error())
	}
	return string(doc), nil
}

// syncFlags sends the flag file now and after every change of a flag or of
// what they share, until the caller goes or the node closes.
func (s *flagSync) syncFlags(stream grpc.ServerStream) error {
	ctx := stream.Context()
	changes := make(flagChanges, 1)
	for _, pattern := range []string{schema.FlagsNamespace, schema.FlagsNamespace + ".*"} {
		sub := s.n.watch.Subscribe(pattern, changes)
		defer s.n.watch.Unsubscribe(sub)
	}
	last := ""
	for {
		doc, err := s.flagFile(ctx)
		if err != nil {
			return err
		}
		if doc != last {
			if err := stream.SendMsg(&flagsResponse{config: doc}); err != nil {
				return err
			}
			last = doc
		}
		select {
		case <-ctx.Done():
			return nil
		case <-s.n.done:
			return status.Error(codes.Unavailable, "the node is shutting down")
		case <-changes:
		}
	}
}

// serveFlagdSync serves the protocol on addr until the node closes.
func (n *Node) serveFlagdSync(addr string, anonymous bool) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("--flagd-sync-addr: %w", err)
	}
	srv := grpc.NewServer(grpc.ForceServerCodec(syncCodec{}))
	srv.RegisterService(&flagSyncDesc, &flagSync{n: n, anonymous: anonymous})
	n.flagdSync, n.flagdSyncAddr = srv, ln.Addr().String()
	n.bg.Add(1)
	go func() {
		defer n.bg.Done()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			n.log.Error("the flagd sync server stopped", zap.Error(err))
		}
	}()
	n.log.Info("serving flagd's sync protocol", zap.String("addr", ln.Addr().String()), zap.Bool("anonymous", anonymous))
	return nil
}

// FlagdSyncAddr is where the node serves flagd's sync protocol ("" if it
// does not).
func (n *Node) FlagdSyncAddr() string { return n.flagdSyncAddr }
