// Command cfgadm administers a cfgcluster through a node's HTTP API.
//
// Exit codes: 0 ok, 2 invalid input, 3 not found, 4 conflict or failed
// expectation, 5 unavailable, 1 anything else.
package main
