package gateway

import (
	"context"
	"math/bits"
	"sync"
	"sync/atomic"
	"time"
)

// Large buffers (a big command read from a client, a big reply kept for one) come
// from size-classed pools and go back once their last user is done with them. A
// fresh allocation of a megabyte costs far more than copying it: the runtime zeroes
// it, the kernel faults its pages in one by one as the socket read fills them, and
// the scavenger hands them back soon after. Classes are powers of two from
// minBigBuf to maxPooledBuf; larger buffers are allocated and left to the garbage
// collector (and to reclaimer, which returns their memory to the system).
const (
	minBigBuf    = 8 << 10
	maxPooledBuf = 4 << 20
)

// bigBufPools holds one pool per class: 8 KiB, 16 KiB, ... 4 MiB.
var bigBufPools [10]sync.Pool

// bigBufClass is the pool index for a buffer of capacity c, or -1 when it is not
// exactly a class size.
func bigBufClass(c int) int {
	if c < minBigBuf || c > maxPooledBuf || c&(c-1) != 0 {
		return -1
	}
	return bits.Len(uint(c)) - bits.Len(minBigBuf)
}

// getBigBuf returns a buffer of length 0 and capacity at least n: the smallest
// class that holds n, or exactly n beyond the largest class.
func getBigBuf(n int) []byte {
	size := max(minBigBuf, 1<<bits.Len(uint(n-1)))
	i := bigBufClass(size)
	if i < 0 {
		return make([]byte, 0, n)
	}
	if p, ok := bigBufPools[i].Get().(*[]byte); ok {
		return (*p)[:0]
	}
	return make([]byte, 0, size)
}

// putBigBuf gives b back for reuse; nothing may use b afterwards. Buffers that are
// not of a class size are left to the garbage collector.
func putBigBuf(b []byte) {
	if i := bigBufClass(cap(b)); i >= 0 {
		b = b[:0]
		bigBufPools[i].Put(&b)
	}
	if cap(b) > maxPooledBuf {
		bigReleased.Add(int64(cap(b)))
	}
}

// lentBuf is a client's read buffer whose large frames went to the backends by
// reference (outStream.appendShared): each holder has a reference, and the buffer
// goes back to its pool when the last one is released.
type lentBuf struct {
	buf  []byte
	refs atomic.Int32
}

func (l *lentBuf) acquire() { l.refs.Add(1) }

func (l *lentBuf) release() {
	if n := l.refs.Add(-1); n == 0 {
		putBigBuf(l.buf)
	} else if n < 0 {
		panic("gateway: lentBuf released more often than acquired")
	}
}

// bigReleased counts the bytes of unpooled buffers (over maxPooledBuf) let go since
// a reclaimer last looked: memory the garbage collector frees at its next cycle, and
// the runtime returns to the system only slowly after that.
var bigReleased atomic.Int64

// reclaimer gives the memory of very large values back to the system soon after
// they have passed: when some were let go (bigReleased) and none for a quiet
// interval since, it runs a collection and returns the freed memory at once
// (debug.FreeOSMemory). Under a steady flow of large values it stays out of the way
// (the heap reuses what it frees); after one 64 MiB SET the gateway's RSS is back
// near its baseline within a second instead of staying at the peak until the next
// collection, which an idle gateway may not run for minutes.
//
// Sessions going dormant free their goroutines' stacks the same way (only at the
// next collection): when at least dormantReclaim of them went dormant (dormant, when
// set, counts them all so far), the reclaimer treats that as memory let go too.
type reclaimer struct {
	interval time.Duration
	free     func()       // debug.FreeOSMemory
	dormant  func() int64 // sessions that went dormant so far; nil: none
}

// dormantReclaim is how many sessions going dormant are worth a collection: their
// stacks (8 KiB or more each) add up to a few MiB.
const dormantReclaim = 512

// run watches bigReleased (and dormant) until ctx ends.
func (r *reclaimer) run(ctx context.Context) {
	t := time.NewTicker(r.interval)
	defer t.Stop()
	pending := int64(0)
	var dormantSeen int64
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n := bigReleased.Swap(0)
		if r.dormant != nil {
			if d := r.dormant(); d-dormantSeen >= dormantReclaim {
				n += d - dormantSeen
				dormantSeen = d
			}
		}
		if n > 0 {
			pending += n // still flowing: wait for a quiet interval
			continue
		}
		if pending > 0 {
			pending = 0
			r.free()
		}
	}
}
