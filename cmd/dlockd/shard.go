package main

import (
	"errors"
	"flag"
	"strings"

	"github.com/dlock-io/dlock/dlockserver/ha"
)

// shardFlags are the flags of a member of a sharded cluster.
type shardFlags struct {
	shard, shards string
	autoRebalance bool
}

func (f *shardFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.shard, "shard", "", "shard `name`: with -etcd, join this shard of a sharded cluster (README, \"Growing a cluster with shards\")")
	fs.StringVar(&f.shards, "shards", "", "comma-separated shard `names`: with -shard, the initial slot map splits the slots evenly between them")
	fs.BoolVar(&f.autoRebalance, "auto-rebalance", true, "with -shard: when this shard joins a cluster whose slot map has no place for it, its primary moves it an even share of the slots (false: wait for dlockctl cluster rebalance or move)")
}

// apply sets the shard fields of cfg.
func (f *shardFlags) apply(cfg *ha.Config) error {
	if f.shards != "" && f.shard == "" {
		return errors.New("-shards needs -shard")
	}
	cfg.Shard = f.shard
	cfg.AutoRebalance = f.autoRebalance
	if f.shards != "" {
		cfg.Shards = strings.Split(f.shards, ",")
	}
	return nil
}

// check refuses shard flags without -etcd.
func (f *shardFlags) check() error {
	if f.shard != "" || f.shards != "" {
		return errors.New("-shard and -shards need -etcd")
	}
	return nil
}
