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
// next collection). Many of them going dormant at once (a connection pool gone idle,
// dormantReclaim or more) are worth a collection too, once no session has gone
// dormant for a quiet interval; clients steadily going dormant and waking never are
// (a collection at every few hundred of them would cost a busy gateway more than it
// gives back). dormant, when set, counts the sessions that went dormant so far.
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
	var st reclaimState
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		var dormant int64
		if r.dormant != nil {
			dormant = r.dormant()
		}
		if st.tick(bigReleased.Swap(0), dormant) {
			r.free()
		}
	}
}

// reclaimState is what a reclaimer remembers between its looks.
type reclaimState struct {
	bigPending     int64 // bytes of large buffers let go since the last reclaim
	dormantSeen    int64 // sessions gone dormant so far, at the last look
	dormantPending int64 // of those, since the wave began
}

// tick takes one interval's news (bytes of large buffers let go in it, sessions gone
// dormant so far) and says whether to reclaim now. Each source waits for a quiet
// interval of its own: while it still flows, the heap reuses what it frees.
func (st *reclaimState) tick(bigReleased, dormantTotal int64) bool {
	st.bigPending += bigReleased
	dormantQuiet := dormantTotal == st.dormantSeen
	st.dormantPending += dormantTotal - st.dormantSeen
	st.dormantSeen = dormantTotal
	if bigReleased == 0 && st.bigPending > 0 || dormantQuiet && st.dormantPending >= dormantReclaim {
		st.bigPending, st.dormantPending = 0, 0
		return true
	}
	if dormantQuiet {
		st.dormantPending = 0 // a few, then quiet: not worth a collection
	}
	return false
}
