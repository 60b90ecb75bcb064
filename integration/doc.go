// Package integration runs real cfgnode processes for end-to-end, multi-node
// and fault tests. Nothing in production imports it.
//
// Binaries are built once per test binary (Binaries) into a temporary folder.
// Each Node runs on loopback ports the kernel hands out, with its data and
// log in t.TempDir(), and is stopped by the test's cleanup.
package integration
