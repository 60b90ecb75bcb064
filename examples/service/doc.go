// Command service is an example service that embeds the cfgcluster watch
// client: it registers itself as an instance, answers 503 during its
// maintenance windows, and serves its current configuration on /config.
//
//	go run ./examples/service --service billing --etcd-endpoints http://127.0.0.1:2379
package main
