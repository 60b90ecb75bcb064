// Package cfgerr holds the one coded error type that cfgcluster uses from the
// store to the HTTP API and the admin CLI.
//
// An *Error carries a Code (what kind of failure), and where it is known the
// configuration key and the field that caused it. The HTTP layer maps codes to
// status codes (HTTPStatus) and cfgadm maps them to exit codes, so a caller can
// branch on the code without parsing messages:
//
//	if cfgerr.CodeOf(err) == cfgerr.NotFound { ... }
package cfgerr
