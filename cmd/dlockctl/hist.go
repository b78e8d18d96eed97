package main

import (
	"math"
	"math/bits"
	"time"
)

// hist is a log-linear latency histogram in the spirit of HdrHistogram:
// values (nanoseconds) below 2·histSub are counted exactly; above, every
// power of two is split into histSub equal buckets, so a bucket is at most
// 1/histSub (0.8 %) of its values wide and the midpoint reported for it is
// within 0.4 % of any value in it.
//
// A hist is not safe for concurrent use: each goroutine records into its
// own and the owner merges them when the goroutines are done.
type hist struct {
	counts [histBuckets]uint64
	n      uint64
	sum    float64
	min    int64
	max    int64
}

const (
	histSubBits = 7
	histSub     = 1 << histSubBits // buckets per power of two
	histMaxBits = 42               // values are clamped below 2^42 ns (73 minutes)
	histBuckets = 2*histSub + (histMaxBits-histSubBits-1)*histSub
)

// histIndex returns the bucket of v (0 ≤ v < 2^histMaxBits).
func histIndex(v int64) int {
	u := uint64(v)
	if u < 2*histSub {
		return int(u)
	}
	e := bits.Len64(u) - histSubBits - 1 // u>>e is in [histSub, 2·histSub)
	return 2*histSub + (e-1)*histSub + int(u>>e) - histSub
}

// histBounds returns the smallest value of bucket i and its width.
func histBounds(i int) (lo, width int64) {
	if i < 2*histSub {
		return int64(i), 1
	}
	i -= 2 * histSub
	e := i/histSub + 1
	m := int64(i%histSub + histSub)
	return m << e, 1 << e
}

// Record adds one value in nanoseconds; negative values count as 0.
func (h *hist) Record(ns int64) {
	if ns < 0 {
		ns = 0
	}
	if ns >= 1<<histMaxBits {
		ns = 1<<histMaxBits - 1
	}
	if h.n == 0 || ns < h.min {
		h.min = ns
	}
	if ns > h.max {
		h.max = ns
	}
	h.counts[histIndex(ns)]++
	h.n++
	h.sum += float64(ns)
}

// RecordSince records the time elapsed since start.
func (h *hist) RecordSince(start time.Time) { h.Record(int64(time.Since(start))) }

// Merge adds o's values to h.
func (h *hist) Merge(o *hist) {
	if o.n == 0 {
		return
	}
	if h.n == 0 || o.min < h.min {
		h.min = o.min
	}
	if o.max > h.max {
		h.max = o.max
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.sum += o.sum
}

// Count returns the number of values recorded.
func (h *hist) Count() uint64 { return h.n }

// Max returns the largest value recorded (exact).
func (h *hist) Max() int64 { return h.max }

// Min returns the smallest value recorded (exact).
func (h *hist) Min() int64 { return h.min }

// Mean returns the mean of the values recorded.
func (h *hist) Mean() float64 {
	if h.n == 0 {
		return math.NaN()
	}
	return h.sum / float64(h.n)
}

// Quantile returns the value at quantile q (0 < q ≤ 1): the ⌈q·n⌉-th
// smallest value, to within the bucket resolution. It returns 0 for an
// empty histogram.
func (h *hist) Quantile(q float64) int64 {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	if rank < 1 {
		rank = 1
	}
	if rank >= h.n {
		return h.max
	}
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			lo, w := histBounds(i)
			v := lo + (w-1)/2
			return min(max(v, h.min), h.max)
		}
	}
	return h.max
}
