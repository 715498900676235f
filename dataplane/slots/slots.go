// Package slots computes slot tables: which real each slot of a virtual
// service sends new connections to. A slot table is what a data-only
// dataplane (the nftables backend) stores in its maps: the kernel picks a
// slot (a counter, a random number or a hash of the client address modulo
// the table's size) and looks up the real.
//
// The functions are pure: the same input always gives the same table, so a
// restarted agent computes exactly what the kernel already holds.
package slots

import (
	"crypto/sha256"
	"encoding/binary"
	"math"
	"sort"
)

// Apportion turns weights into whole slot counts: divided by their greatest
// common divisor when the sum fits in limit, else apportioned over limit
// slots by largest remainder with at least one slot each (so every count is
// within one slot of its exact share). A zero weight counts as 1.
func Apportion(weights []uint64, limit int) []int {
	w := make([]uint64, len(weights))
	g := uint64(0)
	for i, x := range weights {
		w[i] = max(x, 1)
		g = gcd(g, w[i])
	}
	out := make([]int, len(w))
	sum := uint64(0)
	for _, x := range w {
		sum += x / g
	}
	if sum <= uint64(limit) {
		for i, x := range w {
			out[i] = int(x / g)
		}
		return out
	}
	limit = max(limit, len(w))
	total := float64(0)
	for _, x := range w {
		total += float64(x)
	}
	free := limit - len(w)
	rem := make([]float64, len(w))
	used := 0
	for i, x := range w {
		share := float64(x) / total * float64(free)
		out[i] = 1 + int(math.Floor(share))
		rem[i] = share - math.Floor(share)
		used += out[i]
	}
	idx := make([]int, len(w))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return rem[idx[a]] > rem[idx[b]] })
	for k := 0; used < limit; k++ {
		out[idx[k%len(idx)]]++
		used++
	}
	return out
}

// Smooth interleaves slot counts into one cycle (nginx's smooth weighted
// round robin): with counts 3 and 1 the cycle is 0 0 1 0 rather than
// 0 0 0 1, so a heavy real is not hit several times in a row.
func Smooth(counts []int) []int {
	total := 0
	for _, c := range counts {
		total += c
	}
	cur := make([]int, len(counts))
	out := make([]int, 0, total)
	for range total {
		best := 0
		for i, c := range counts {
			cur[i] += c
			if cur[i] > cur[best] {
				best = i
			}
		}
		cur[best] -= total
		out = append(out, best)
	}
	return out
}

// Maglev fills a consistent-hashing lookup table of size m (Eisenbud et
// al., "Maglev: A Fast and Reliable Software Network Load Balancer", NSDI
// 2016, section 3.4): every backend walks its own permutation of the slots,
// derived from its name alone, and the backends take turns claiming the
// next free slot of their permutation. Because a backend's permutation does
// not depend on the others, removing one of N backends reassigns its slots
// and only few others, so about 1/N of the clients move; adding one takes
// about 1/(N+1) of the slots.
//
// Weights (zero counts as 1) are divided by their greatest common divisor;
// in each round backend i takes w_i turns, so slot counts follow the weights.
// Without weights every backend ends with ⌊m/N⌋ or ⌈m/N⌉ slots.
//
// m must be prime (so every skip is coprime with it) and much larger than
// the number of backends: the excess movement over 1/N shrinks as m/N
// grows (TestMaglevMovement). It must not depend on the backends: a new m
// gives every client a new slot. The result maps each slot to an index
// into names. Names must be distinct.
func Maglev(names []string, weights []uint32, m int) []int {
	n := len(names)
	table := make([]int, m)
	if n == 0 {
		return nil
	}
	for i := range table {
		table[i] = -1
	}
	offset := make([]uint64, n)
	skip := make([]uint64, n)
	for i, name := range names {
		sum := sha256.Sum256([]byte(name))
		offset[i] = binary.BigEndian.Uint64(sum[0:8]) % uint64(m)
		skip[i] = binary.BigEndian.Uint64(sum[8:16])%uint64(m-1) + 1
	}
	turns := make([]int, n)
	g := uint64(0)
	for i := range turns {
		w := uint64(1)
		if i < len(weights) && weights[i] > 0 {
			w = uint64(weights[i])
		}
		turns[i] = int(w)
		g = gcd(g, w)
	}
	for i := range turns {
		turns[i] /= int(g)
	}
	next := make([]uint64, n) // position in each backend's permutation
	filled := 0
	for filled < m {
		for i := 0; i < n && filled < m; i++ {
			for t := 0; t < turns[i] && filled < m; t++ {
				for {
					c := (offset[i] + next[i]*skip[i]) % uint64(m)
					next[i]++
					if table[c] < 0 {
						table[c] = i
						filled++
						break
					}
				}
			}
		}
	}
	return table
}

// MaglevUnits returns the turns per round each backend takes in a table
// for these weights: the weights ÷ gcd, or apportioned over maxUnits when
// they sum to more (zero counts as 1).
func MaglevUnits(weights []uint32, maxUnits int) []uint32 {
	w := make([]uint64, len(weights))
	for i, x := range weights {
		w[i] = uint64(x)
	}
	counts := Apportion(w, max(maxUnits, len(w)))
	out := make([]uint32, len(counts))
	for i, c := range counts {
		out[i] = uint32(c)
	}
	return out
}

func gcd(a, b uint64) uint64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}
