// Package api holds the wire types of cfgnode's HTTP API and a Go client for
// it. The paths and JSON shapes here are a contract: other services script
// against them, so they change only by addition.
//
// Every error answer has one shape, Error, with the status code given by
// cfgerr.HTTPStatus: 400 invalid, 404 not found, 409 conflict, 412 failed
// expect_revision, 503 unavailable.
package api
