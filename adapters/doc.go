// Package adapters binds services' runtime behaviour to the configuration:
// HTTP middleware that answers 503 during a maintenance window and gates
// routes on feature flags, and the wiring that registers a service instance
// with the cluster.
package adapters
