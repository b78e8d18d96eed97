package ha

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/dlock-io/dlock/dlockserver"
)

// Durable atomic64 objects (Config.DurableObjects): one key per object,
// objects/<id>, holding its record as JSON. The server commits the records
// its requests changed in batches (dlockserver.ObjectStore); each batch is
// one or more transactions guarded by the leader key, so a replaced primary
// writes nothing.

// maxTxnOps stays below etcd's default limit of operations in a
// transaction (--max-txn-ops 128).
const maxTxnOps = 120

func (n *Node) objectsKey() string { return n.pfx + "objects/" }

// objectRecord is the stored form of a dlockserver.ObjectRecord.
type objectRecord struct {
	Desc      string           `json:"desc"`
	Value     uint64           `json:"value"`
	Owner     int32            `json:"owner,omitempty"`
	Destroyed bool             `json:"destroyed,omitempty"`
	LeaseLeft uint32           `json:"lease_left"`
	Getters   map[int32]uint32 `json:"getters,omitempty"`
}

// CommitObjects writes and deletes object records while this node is the
// primary (dlockserver.ObjectStore).
func (n *Node) CommitObjects(ctx context.Context, put []dlockserver.ObjectRecord, del []int32) error {
	g, err := n.guard()
	if err != nil {
		return err
	}
	ops := make([]clientv3.Op, 0, len(put)+len(del))
	for _, r := range put {
		b, err := json.Marshal(objectRecord{Desc: r.Desc, Value: r.Value, Owner: r.Owner, Destroyed: r.Destroyed,
			LeaseLeft: r.LeaseLeft, Getters: r.Getters})
		if err != nil {
			return err
		}
		ops = append(ops, clientv3.OpPut(n.objectsKey()+strconv.Itoa(int(r.ID)), string(b)))
	}
	for _, id := range del {
		ops = append(ops, clientv3.OpDelete(n.objectsKey()+strconv.Itoa(int(id))))
	}
	for len(ops) > 0 {
		k := min(len(ops), maxTxnOps)
		resp, err := n.cli.Txn(ctx).If(g).Then(ops[:k]...).Commit()
		if err != nil {
			return fmt.Errorf("ha: etcd: %w", err)
		}
		if !resp.Succeeded {
			return errors.New("ha: not the primary any more")
		}
		ops = ops[k:]
	}
	return nil
}

// loadObjects reads the object records, guarded by the leader key.
func (n *Node) loadObjects(ctx context.Context, guard clientv3.Cmp) ([]dlockserver.ObjectRecord, error) {
	resp, err := n.cli.Txn(ctx).If(guard).Then(clientv3.OpGet(n.objectsKey(), clientv3.WithPrefix())).Commit()
	if err != nil {
		return nil, fmt.Errorf("read objects: %w", err)
	}
	if !resp.Succeeded {
		return nil, errors.New("lost the leader key before serving")
	}
	kvs := resp.Responses[0].GetResponseRange().Kvs
	recs := make([]dlockserver.ObjectRecord, 0, len(kvs))
	for _, kv := range kvs {
		id, err := strconv.ParseInt(string(kv.Key[len(n.objectsKey()):]), 10, 32)
		var r objectRecord
		if err == nil {
			err = json.Unmarshal(kv.Value, &r)
		}
		if err != nil || id <= 0 {
			// A record this version cannot read: serving without it
			// would lose it silently.
			return nil, fmt.Errorf("object record %q: unreadable (%v)", kv.Key, err)
		}
		recs = append(recs, dlockserver.ObjectRecord{ID: int32(id), Desc: r.Desc, Value: r.Value, Owner: r.Owner,
			Destroyed: r.Destroyed, LeaseLeft: r.LeaseLeft, Getters: r.Getters})
	}
	return recs, nil
}

// dropObjects deletes the object records a durable member left, when this
// member is not durable: its clients are told the objects were lost, so a
// later durable primary must not bring them back.
func (n *Node) dropObjects(ctx context.Context, guard clientv3.Cmp) error {
	resp, err := n.cli.Txn(ctx).If(guard).Then(clientv3.OpDelete(n.objectsKey(), clientv3.WithPrefix())).Commit()
	if err != nil {
		return fmt.Errorf("drop objects: %w", err)
	}
	if !resp.Succeeded {
		return errors.New("lost the leader key before serving")
	}
	return nil
}
