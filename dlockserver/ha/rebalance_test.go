package ha_test

import (
	"testing"

	"github.com/dlock-io/dlock/dlockserver"
	"github.com/dlock-io/dlock/dlockserver/ha"
)

// TestRebalancePlan: a shard that joins a two-shard map gets a third of the
// slots (341), taken from the others' highest slots; every slot stays owned once;
// an even split plans nothing; unassigned slots are handed out first.
func TestRebalancePlan(t *testing.T) {
	st := ha.ShardsStatus{Shards: []ha.ShardStatus{
		{Name: "a", Slots: ha.Ranges{{0, 511}}},
		{Name: "b", Slots: ha.Ranges{{512, 1023}}},
	}}
	plan := ha.Rebalance(st, []string{"c"})
	if len(plan) != 1 || plan[0].To != "c" {
		t.Fatalf("plan %+v", plan)
	}
	if want := (ha.Ranges{{342, 511}, {853, 1023}}); !equalRanges(plan[0].Slots, want) {
		t.Fatalf("moves %v, want %v", plan[0].Slots, want)
	}
	// Applied, the split is even: 342, 341, 341 (the most loaded keeps the
	// extra slot, so that fewer move).
	owner := map[int]string{}
	for k := 0; k < 342; k++ {
		owner[k] = "a"
	}
	for k := 512; k < 853; k++ {
		owner[k] = "b"
	}
	for _, r := range plan[0].Slots {
		for k := r[0]; k <= r[1]; k++ {
			if owner[k] != "" {
				t.Fatalf("slot %d moved twice", k)
			}
			owner[k] = "c"
		}
	}
	count := map[string]int{}
	for _, s := range owner {
		count[s]++
	}
	if len(owner) != dlockserver.NumSlots || count["a"] != 342 || count["c"] != 341 || count["b"] != 341 {
		t.Fatalf("after the plan: %v over %d slots", count, len(owner))
	}
	if p := ha.Rebalance(ha.ShardsStatus{Shards: []ha.ShardStatus{
		{Name: "a", Slots: ha.Ranges{{0, 341}}}, {Name: "b", Slots: ha.Ranges{{342, 682}}}, {Name: "c", Slots: ha.Ranges{{683, 1023}}},
	}}, nil); len(p) != 0 {
		t.Fatalf("an even split planned %+v", p)
	}
	// Unassigned slots (1000-1023) go to the underloaded shard first.
	p := ha.Rebalance(ha.ShardsStatus{Shards: []ha.ShardStatus{
		{Name: "a", Slots: ha.Ranges{{0, 511}}}, {Name: "b", Slots: ha.Ranges{{512, 999}}},
	}}, nil)
	if len(p) != 1 || p[0].To != "b" || !equalRanges(p[0].Slots, ha.Ranges{{1000, 1023}}) {
		t.Fatalf("plan with unassigned slots: %+v", p)
	}
}

func equalRanges(a, b ha.Ranges) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
