package cfgerr

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// Code is the kind of an error. Its string form is stable and appears on the wire.
type Code string

const (
	Invalid            Code = "invalid"             // bad input: nothing was written
	NotFound           Code = "not_found"           // no such key, revision or record
	Conflict           Code = "conflict"            // a concurrent change won; retrying may succeed
	FailedPrecondition Code = "failed_precondition" // an expect_revision did not match
	Unavailable        Code = "unavailable"         // the cluster could not be reached in time
	Unauthenticated    Code = "unauthenticated"     // no valid credential: missing, malformed, unknown, expired or revoked
	Forbidden          Code = "forbidden"           // the caller may not do this (a cross-origin write, a missing right)
	TooMany            Code = "too_many_requests"   // over a limit on connections, streams or requests; retry later
	Sealed             Code = "sealed"              // a sensitive value that this process holds no key to open, or that does not open
	Internal           Code = "internal"            // a bug or corrupted state
)

// Error is a coded error. Key and Field are empty when they do not apply.
type Error struct {
	Code    Code
	Key     string // the configuration key concerned, if any
	Field   string // the field of the key or request concerned, if any
	Message string
	Err     error // the underlying cause, if any (not sent over the wire)
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.Key != "" {
		fmt.Fprintf(&b, "key %q: ", e.Key)
	}
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Message)
	if e.Message == "" && e.Err != nil {
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error with a formatted message.
func Errorf(code Code, key, field, format string, args ...any) *Error {
	return &Error{Code: code, Key: key, Field: field, Message: fmt.Sprintf(format, args...)}
}

// Wrap returns an *Error with the given code whose message is err's. It
// returns nil for a nil err, and err itself if it already carries a code.
func Wrap(code Code, err error) error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return err
	}
	return &Error{Code: code, Message: err.Error(), Err: err}
}

// CodeOf returns the code of the first *Error in err's chain, Internal for any
// other non-nil error, and "" for nil. A joined error (errors.Join) of several
// coded errors takes the code of the first.
func CodeOf(err error) Code {
	if err == nil {
		return ""
	}
	if e := First(err); e != nil {
		return e.Code
	}
	return Internal
}

// First returns the first *Error in err's tree, or nil.
func First(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return nil
}

// All flattens err (which may be an errors.Join) into its coded errors; an
// uncoded error becomes an Internal one.
func All(err error) []*Error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []*Error
		for _, e := range j.Unwrap() {
			out = append(out, All(e)...)
		}
		return out
	}
	if e := First(err); e != nil {
		return []*Error{e}
	}
	return []*Error{{Code: Internal, Message: err.Error(), Err: err}}
}

// HTTPStatus is the status code the API answers for a code.
func HTTPStatus(c Code) int {
	switch c {
	case Invalid:
		return http.StatusBadRequest
	case NotFound:
		return http.StatusNotFound
	case Conflict:
		return http.StatusConflict
	case FailedPrecondition:
		return http.StatusPreconditionFailed
	case Unavailable:
		return http.StatusServiceUnavailable
	case Unauthenticated:
		return http.StatusUnauthorized
	case Forbidden:
		return http.StatusForbidden
	case TooMany:
		return http.StatusTooManyRequests
	default:
		return http.StatusInternalServerError
	}
}
