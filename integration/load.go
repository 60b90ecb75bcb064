package integration

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"cfgcluster/api"
	"cfgcluster/kv"
)

// Ack is an acknowledged write.
type Ack struct {
	Key, Value string
	Revision   int64
	Called, At time.Time // when the request was sent, and acknowledged
}

// Load runs writers and readers against a cluster and records the history
// of their operations for a linearizability check. Each worker keeps one
// request in flight and moves to the next node when one fails. Writes use
// unique values; reads are linearizable (through etcd's quorum).
type Load struct {
	tag    string // makes this load's values unique across loads and runs
	key    string
	init   string // the key's value when the load started
	start  time.Time
	mu     sync.Mutex
	acks   []Ack
	ops    []porcupine.Operation
	errs   int
	nextID int // porcupine client ids: an unknown outcome retires its id
	wg     sync.WaitGroup
	cancel context.CancelFunc
}

type regInput struct {
	write bool
	value string
}

// StartLoad starts writers and readers on key.
func (cl *Cluster) StartLoad(writers, readers int, key string) *Load {
	ctx, cancel := context.WithCancel(context.Background())
	l := &Load{tag: fmt.Sprintf("%08x", rand.Uint32()), key: key, start: time.Now(), cancel: cancel}
	for i := 0; ; i++ { // the register's initial state: what earlier rounds left
		rctx, rcancel := context.WithTimeout(ctx, 3*time.Second)
		v, err := cl.Nodes[i%len(cl.Nodes)].API().GetLinearizable(rctx, key)
		rcancel()
		if err == nil {
			l.init, _ = v.Value.(string)
			break
		}
		if i > 30 {
			panic(fmt.Sprintf("integration: no node answers a read of %s: %v", key, err))
		}
		time.Sleep(100 * time.Millisecond)
	}
	for id := 0; id < writers+readers; id++ {
		l.wg.Add(1)
		go func(id int, write bool) {
			defer l.wg.Done()
			node := id
			cid := l.clientID()
			for seq := 0; ctx.Err() == nil; seq++ {
				c := cl.Nodes[node%len(cl.Nodes)].API()
				// A request to a node that lost its leader waits for etcd's
				// request timeout (7 s); give up sooner and try another node.
				c.HTTP.Timeout = 1500 * time.Millisecond
				in := regInput{write: write, value: fmt.Sprintf("%s-w%d-%d", l.tag, id, seq)}
				called := time.Now()
				call := l.now()
				var out string
				var err error
				var rev int64
				if write {
					var res *api.WriteResult
					if res, err = c.Set(ctx, key, api.SetRequest{Text: &in.value}); err == nil {
						rev = res.Revision
					}
				} else {
					var v *api.Value
					if v, err = c.GetLinearizable(ctx, key); err == nil {
						out, _ = v.Value.(string)
					}
				}
				ret := l.now()
				l.mu.Lock()
				switch {
				case err == nil:
					l.ops = append(l.ops, porcupine.Operation{ClientId: cid, Input: in, Call: call, Output: out, Return: ret})
					if write {
						l.acks = append(l.acks, Ack{Key: key, Value: in.value, Revision: rev, Called: called, At: time.Now()})
					}
				case write:
					// It may have taken effect, even if Stop cancelled it:
					// its return is open-ended.
					l.ops = append(l.ops, porcupine.Operation{ClientId: cid, Input: in, Call: call, Return: math.MaxInt64})
					l.errs++
				default:
					l.errs++ // a failed read changed nothing
				}
				l.mu.Unlock()
				if err != nil {
					if write {
						cid = l.clientID()
					}
					node++
					time.Sleep(20 * time.Millisecond)
				}
			}
		}(id, id < writers)
	}
	return l
}

func (l *Load) now() int64 { return int64(time.Since(l.start)) }

func (l *Load) clientID() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.nextID++
	return l.nextID - 1
}

// Acks returns the writes acknowledged so far.
func (l *Load) Acks() []Ack {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Ack(nil), l.acks...)
}

// Stop stops the load and returns the acknowledged writes and the number
// of failed requests.
func (l *Load) Stop() ([]Ack, int) {
	l.cancel()
	l.wg.Wait()
	return l.Acks(), l.errs
}

// registerFrom is the model: one register, initially init.
func registerFrom(init string) porcupine.Model {
	m := register
	m.Init = func() any { return init }
	return m
}

// register is the model of a register whose initial value is "".
var register = porcupine.Model{
	Init: func() any { return "" },
	Step: func(state, input, output any) (bool, any) {
		in := input.(regInput)
		if in.write {
			return true, in.value
		}
		return output.(string) == state.(string), state
	},
	DescribeOperation: func(input, output any) string {
		in := input.(regInput)
		if in.write {
			return "write " + in.value
		}
		return fmt.Sprintf("read -> %v", output)
	},
}

// Linearizable checks that the recorded history is linearizable; a checker
// time-out counts as a failure. It returns the number of operations.
func (l *Load) Linearizable() (int, error) {
	l.mu.Lock()
	all := append([]porcupine.Operation(nil), l.ops...)
	l.mu.Unlock()
	// A write of unknown outcome whose value no read returned is dropped:
	// for a register that is sound (a linearization with it places it just
	// before the next write, where no read sees it), and it keeps the
	// search small (each open write multiplies the orders to try).
	read := map[string]bool{}
	for _, o := range all {
		if in := o.Input.(regInput); !in.write {
			read[o.Output.(string)] = true
		}
	}
	var ops []porcupine.Operation
	for _, o := range all {
		if in := o.Input.(regInput); in.write && o.Return == math.MaxInt64 && !read[in.value] {
			continue
		}
		ops = append(ops, o)
	}
	res, _ := porcupine.CheckOperationsVerbose(registerFrom(l.init), ops, 60*time.Second)
	if res != porcupine.Ok {
		return len(ops), fmt.Errorf("the history of %d operations is not linearizable: %s", len(ops), res)
	}
	return len(ops), nil
}

// CheckLinearizable fails the test unless the history is linearizable.
func (l *Load) CheckLinearizable(t *testing.T) {
	t.Helper()
	n, err := l.Linearizable()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("linearizable: %d operations", n)
}

// History returns the recorded operations, for offline re-checking.
func (l *Load) History() []porcupine.Operation {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]porcupine.Operation(nil), l.ops...)
}

// LostAcks returns the acknowledged writes that are not in the cluster's
// history at the revision they were acknowledged with. It pages through
// each key's audit trail (a thousand changes a request) back to the oldest
// acknowledged write, and reads one at a time only what the trail no
// longer has.
func (cl *Cluster) LostAcks(node int, acks []Ack) []Ack {
	c := cl.API(node)
	type past struct {
		values map[int64]string // revision → value
		oldest int64            // the trail is whole from here on
	}
	hist := map[string]*past{}
	for _, a := range acks {
		h := hist[a.Key]
		if h == nil {
			h = &past{values: map[int64]string{}, oldest: math.MaxInt64}
			hist[a.Key] = h
		}
		for before := int64(0); a.Revision < h.oldest; {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			page, err := c.Audit(ctx, a.Key, before, kv.MaxAuditLimit)
			cancel()
			if err != nil || len(page.Records) == 0 {
				break
			}
			for _, r := range page.Records {
				for _, ch := range r.Changes {
					if ch.Key == a.Key {
						h.values[r.Revision], _ = ch.New.(string)
					}
				}
				h.oldest, before = r.Revision, r.Revision
			}
		}
	}
	var lost []Ack
	for _, a := range acks {
		if h := hist[a.Key]; a.Revision >= h.oldest {
			if h.values[a.Revision] != a.Value {
				lost = append(lost, a)
			}
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		v, err := c.Get(ctx, a.Key, a.Revision)
		cancel()
		if err != nil || v.Value != a.Value || v.Revision != a.Revision {
			lost = append(lost, a)
		}
	}
	return lost
}

// CheckAcks fails the test unless every acknowledged write is in the
// cluster's history at the revision it was acknowledged with.
func (cl *Cluster) CheckAcks(t *testing.T, node int, acks []Ack) {
	t.Helper()
	if lost := cl.LostAcks(node, acks); len(lost) > 0 {
		t.Fatalf("%d acknowledged writes are lost, the first: %+v", len(lost), lost[0])
	}
}
