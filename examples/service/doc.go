// Command service is an example service that embeds the cfgcluster watch
// client: it registers itself as an instance, answers 503 during its
// maintenance windows, logs every configuration change it applies (key, old
// and new value, revision, who and why), and serves its configuration.
//
//	go run ./examples/service --service billing --http-addr 127.0.0.1:8080
//
// Its endpoints:
//
//	GET /config?key=NAME  the key's value as this process sees it: {"key", "value", "source", "revision"}
//	                      (source: environment, cluster, snapshot or default); 404 for a key the schema lacks
//	GET /healthz          "ok", even during maintenance
//	GET /                 the service's own answer; 503 with Retry-After during a maintenance window
//
// Flags: --etcd-endpoints (default http://127.0.0.1:2379), --service, --id,
// --http-addr, --schema (the service's own schema file), --snapshot (a
// last-known snapshot file), --ttl (instance registration, seconds).
package main
