package gateway

import (
	"sync/atomic"
	"time"

	"github.com/dynode/dynode-broadcaster/protocols"
)

// numClasses is how many protocols.Class values there are.
const numClasses = 4

// latencyBuckets are the upper bounds of the request latency histogram, from
// loopback round trips to a backend timing out.
var latencyBuckets = [...]time.Duration{
	50 * time.Microsecond, 100 * time.Microsecond, 250 * time.Microsecond, 500 * time.Microsecond,
	time.Millisecond, 2500 * time.Microsecond, 5 * time.Millisecond, 10 * time.Millisecond,
	25 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond, 250 * time.Millisecond,
	500 * time.Millisecond, time.Second, 2500 * time.Millisecond, 5 * time.Second, 10 * time.Second,
}

// LatencyHistogram counts client requests by the time from reading them to handing
// their replies to the client's connection, per command class. The commands of one
// pipelined burst all count with the burst's time. Safe for concurrent use; adding
// costs one atomic add per class present in the burst.
type LatencyHistogram struct {
	counts [numClasses][len(latencyBuckets) + 1]atomic.Int64 // last: over the largest bound
	sumNs  [numClasses]atomic.Int64
}

// observe counts n[c] commands of each class c as taking d.
func (h *LatencyHistogram) observe(d time.Duration, n *[numClasses]int32) {
	i := 0
	for i < len(latencyBuckets) && d > latencyBuckets[i] {
		i++
	}
	for c, k := range n {
		if k > 0 {
			h.counts[c][i].Add(int64(k))
			h.sumNs[c].Add(int64(k) * int64(d))
		}
	}
}

// Snapshot returns class's histogram: cumulative counts per upper bound (seconds),
// the total count and the sum of latencies in seconds.
func (h *LatencyHistogram) Snapshot(class protocols.Class) (buckets map[float64]uint64, count uint64, sum float64) {
	buckets = make(map[float64]uint64, len(latencyBuckets))
	for i, bound := range latencyBuckets {
		count += uint64(h.counts[class][i].Load())
		buckets[bound.Seconds()] = count
	}
	count += uint64(h.counts[class][len(latencyBuckets)].Load())
	return buckets, count, time.Duration(h.sumNs[class].Load()).Seconds()
}

// Quantile estimates the q quantile (0..1) of class's latency from the histogram:
// the upper bound of the bucket it falls in (0 without observations).
func (h *LatencyHistogram) Quantile(class protocols.Class, q float64) time.Duration {
	var total int64
	for i := range h.counts[class] {
		total += h.counts[class][i].Load()
	}
	if total == 0 {
		return 0
	}
	rank, seen := int64(q*float64(total)+0.5), int64(0)
	for i, bound := range latencyBuckets {
		if seen += h.counts[class][i].Load(); seen >= rank {
			return bound
		}
	}
	return latencyBuckets[len(latencyBuckets)-1]
}
