package dlock_test

import (
	"context"
	"fmt"
	"log"
	"net"

	"github.com/dlock-io/dlock"
	"github.com/dlock-io/dlock/dlockserver"
)

// startShards runs two servers as shards "a" (slots 0–511) and "b" (512–1023)
// of one map. In a real cluster dlockd -etcd ... -shard NAME keeps the map
// in etcd and gives it to the servers (package dlockserver/ha); here it is
// given directly.
func startShards() ([]string, func()) {
	var addrs []string
	var srvs []*dlockserver.Server
	for range 2 {
		srv, err := dlockserver.New(dlockserver.Config{})
		if err != nil {
			log.Fatal(err)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			log.Fatal(err)
		}
		go srv.Serve(ln)
		addrs = append(addrs, ln.Addr().String())
		srvs = append(srvs, srv)
	}
	m := dlockserver.ShardMap{Version: 1, Shards: []dlockserver.Shard{{Name: "a", Addrs: addrs[:1]}, {Name: "b", Addrs: addrs[1:]}},
		Slots: make([]int, dlockserver.NumSlots)}
	for i := dlockserver.NumSlots / 2; i < dlockserver.NumSlots; i++ {
		m.Slots[i] = 1
	}
	for i, srv := range srvs {
		if err := srv.SetShardMap(m.Shards[i].Name, m); err != nil {
			log.Fatal(err)
		}
	}
	return addrs, func() {
		for _, srv := range srvs {
			srv.Close()
		}
	}
}

// A sharded cluster: the router knows one member, learns the slot map from
// it, and sends each lock to the shard that owns its name. Names with the
// same hash tag ("{orders}") share a shard; a batch may span shards.
func ExampleDialRouter() {
	addrs, stop := startShards()
	defer stop()
	ctx := context.Background()

	r, err := dlock.DialRouter(ctx, &dlock.Config{Addrs: addrs[:1]})
	if err != nil {
		log.Fatal(err)
	}
	defer r.Shutdown(ctx)

	names := []string{"{orders}/1", "{orders}/2", "users/7", "users/10", "users/11"}
	var reqs []dlock.LockRequest
	for _, name := range names {
		l, err := r.OpenLock(ctx, name, dlock.LockOptions{})
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("%s: slot %d, shard %s\n", name, dlock.SlotOf(name), r.ShardOf(name))
		reqs = append(reqs, dlock.LockRequest{Lock: l})
	}
	results := make([]dlock.Result, len(reqs))
	if err := r.BatchTryLock(ctx, reqs, results); err != nil {
		log.Fatal(err)
	}
	for i, res := range results {
		fmt.Println(names[i], res.Status == dlock.Success)
	}
	// Output:
	// {orders}/1: slot 494, shard a
	// {orders}/2: slot 494, shard a
	// users/7: slot 220, shard a
	// users/10: slot 732, shard b
	// users/11: slot 586, shard b
	// {orders}/1 true
	// {orders}/2 true
	// users/7 true
	// users/10 true
	// users/11 true
}
