package main

import (
	"strings"
	"testing"
)

// TestShardFlagErrors: the shard flags need -etcd, -shards needs -shard,
// and a shard name must stay inside its prefix.
func TestShardFlagErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-addr", "127.0.0.1:0", "-shard", "a"}, "need -etcd"},
		{[]string{"-addr", "127.0.0.1:0", "-etcd", "http://127.0.0.1:1", "-shards", "a,b"}, "-shards needs -shard"},
		{[]string{"-addr", "127.0.0.1:0", "-etcd", "http://127.0.0.1:1", "-shard", "a/b"}, "shard name"},
		{[]string{"-addr", "127.0.0.1:0", "-etcd", "http://127.0.0.1:1", "-shard", "a", "-shards", "a,{b}"}, "shard name"},
	} {
		var out, errw strings.Builder
		err := run(c.args, &out, &errw)
		if err == nil || !strings.Contains(err.Error()+errw.String(), c.want) {
			t.Errorf("dlockd %v: %v, want an error mentioning %q", c.args, err, c.want)
		}
	}
}
