package main

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// exactQuantile is the ⌈q·n⌉-th smallest value of sorted.
func exactQuantile(sorted []int64, q float64) int64 {
	rank := int(math.Ceil(q * float64(len(sorted))))
	rank = max(rank, 1)
	return sorted[min(rank, len(sorted))-1]
}

func TestHistQuantiles(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	dists := map[string]func() int64{
		"uniform-small": func() int64 { return rng.Int64N(300) },
		"uniform":       func() int64 { return rng.Int64N(1e9) },
		"lognormal":     func() int64 { return int64(math.Exp(rng.NormFloat64()*1.5 + 10)) },
		"bimodal": func() int64 {
			if rng.IntN(100) == 0 {
				return 5e6 + rng.Int64N(1e6)
			}
			return 20e3 + rng.Int64N(5e3)
		},
	}
	qs := []float64{0.001, 0.1, 0.5, 0.9, 0.99, 0.999, 0.9999, 1}
	for name, gen := range dists {
		t.Run(name, func(t *testing.T) {
			var h hist
			vals := make([]int64, 100_000)
			for i := range vals {
				vals[i] = gen()
				h.Record(vals[i])
			}
			slices.Sort(vals)
			if got, want := h.Count(), uint64(len(vals)); got != want {
				t.Fatalf("Count() = %d, want %d", got, want)
			}
			if got, want := h.Min(), vals[0]; got != want {
				t.Errorf("Min() = %d, want %d", got, want)
			}
			if got, want := h.Max(), vals[len(vals)-1]; got != want {
				t.Errorf("Max() = %d, want %d", got, want)
			}
			for _, q := range qs {
				got, want := h.Quantile(q), exactQuantile(vals, q)
				if relErr(got, want) > 0.01 {
					t.Errorf("Quantile(%v) = %d, want %d (±1%%)", q, got, want)
				}
			}
		})
	}
}

func relErr(got, want int64) float64 {
	if want == 0 {
		return math.Abs(float64(got))
	}
	return math.Abs(float64(got-want)) / float64(want)
}

func TestHistMerge(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var parts [4]hist
	var all hist
	var vals []int64
	for i := range 40_000 {
		v := int64(math.Exp(rng.NormFloat64() + 12))
		parts[i%4].Record(v)
		all.Record(v)
		vals = append(vals, v)
	}
	var merged hist
	for i := range parts {
		merged.Merge(&parts[i])
	}
	if merged != all {
		t.Fatalf("merged histogram differs from the one that saw every value")
	}
	slices.Sort(vals)
	for _, q := range []float64{0.5, 0.99, 0.999} {
		if got, want := merged.Quantile(q), exactQuantile(vals, q); relErr(got, want) > 0.01 {
			t.Errorf("merged Quantile(%v) = %d, want %d (±1%%)", q, got, want)
		}
	}
}

func TestHistBuckets(t *testing.T) {
	// Every bucket's bounds map back to it, and buckets tile the range.
	next := int64(0)
	for i := 0; i < histBuckets; i++ {
		lo, w := histBounds(i)
		if lo != next {
			t.Fatalf("bucket %d starts at %d, want %d", i, lo, next)
		}
		if histIndex(lo) != i || histIndex(lo+w-1) != i {
			t.Fatalf("bucket %d [%d,%d) maps to %d..%d", i, lo, lo+w, histIndex(lo), histIndex(lo+w-1))
		}
		if lo >= 2*histSub && float64(w)/float64(lo) > 1.0/histSub {
			t.Fatalf("bucket %d [%d,+%d) wider than 1/%d", i, lo, w, histSub)
		}
		next = lo + w
	}
	if next != 1<<histMaxBits {
		t.Fatalf("buckets end at %d, want %d", next, int64(1)<<histMaxBits)
	}
	var h hist
	h.Record(-5)
	h.Record(math.MaxInt64)
	if h.Min() != 0 || h.Max() != 1<<histMaxBits-1 {
		t.Fatalf("clamping: min %d max %d", h.Min(), h.Max())
	}
	var empty hist
	if empty.Quantile(0.5) != 0 {
		t.Fatalf("empty Quantile != 0")
	}
}
