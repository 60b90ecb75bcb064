package kv

import (
	"context"
	"errors"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"cfgcluster/cfgerr"
)

// EtcdError turns an etcd client error into a coded one: bad input (a
// request too large, a compacted or future revision) keeps its code, and
// only what retrying may cure is Unavailable.
func EtcdError(err error) error {
	if err == nil {
		return nil
	}
	var ce *cfgerr.Error
	switch {
	case errors.As(err, &ce):
		return err
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return &cfgerr.Error{Code: cfgerr.Unavailable, Message: "etcd did not answer in time: " + err.Error(), Err: err}
	case errors.Is(err, rpctypes.ErrCompacted):
		return &cfgerr.Error{Code: cfgerr.NotFound, Field: "revision", Message: "that revision has been compacted", Err: err}
	case errors.Is(err, rpctypes.ErrFutureRev):
		return &cfgerr.Error{Code: cfgerr.NotFound, Field: "revision", Message: "that revision is in the future", Err: err}
	case errors.Is(err, rpctypes.ErrNoSpace):
		return &cfgerr.Error{Code: cfgerr.Unavailable, Message: "etcd is out of space (NOSPACE alarm): writes are refused until it is compacted, defragmented and the alarm disarmed (docs/OPERATIONS.md)", Err: err}
	case errors.Is(err, rpctypes.ErrTooManyOps):
		return &cfgerr.Error{Code: cfgerr.Invalid, Field: "changes", Message: "the change has too many keys for one etcd transaction (each key takes two operations, its value and its audit entry): split it, or raise etcd's --max-txn-ops: " + err.Error(), Err: err}
	case errors.Is(err, rpctypes.ErrRequestTooLarge):
		return &cfgerr.Error{Code: cfgerr.Invalid, Field: "changes", Message: "the change is too large for one etcd transaction (each value is sent twice, with its audit entry): split it, or raise etcd's --max-request-bytes: " + err.Error(), Err: err}
	}
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled:
		return &cfgerr.Error{Code: cfgerr.Unavailable, Message: "etcd is unavailable: " + err.Error(), Err: err}
	case codes.ResourceExhausted:
		return &cfgerr.Error{Code: cfgerr.Invalid, Field: "changes", Message: "the change is too large for etcd: " + err.Error(), Err: err}
	}
	return &cfgerr.Error{Code: cfgerr.Internal, Message: "etcd: " + err.Error(), Err: err}
}
