package gateway

import (
	"bytes"
	"context"
	"net"
	"testing"
	"time"
	"unsafe"
)

func TestBigBufClasses(t *testing.T) {
	for _, tt := range []struct{ n, cap int }{
		{1, 8 << 10}, {8 << 10, 8 << 10}, {8<<10 + 1, 16 << 10}, {1 << 20, 1 << 20},
		{1<<20 + 40, 2 << 20}, {4 << 20, 4 << 20}, {4<<20 + 1, 4<<20 + 1}, {64 << 20, 64 << 20},
	} {
		b := getBigBuf(tt.n)
		if len(b) != 0 || cap(b) != tt.cap {
			t.Errorf("getBigBuf(%d): len %d cap %d, want 0 and %d", tt.n, len(b), cap(b), tt.cap)
		}
		putBigBuf(b)
	}
	for _, c := range []int{4 << 10, 12 << 10, 8<<20 + 1} {
		if i := bigBufClass(c); i != -1 {
			t.Errorf("bigBufClass(%d) = %d, want -1 (not pooled)", c, i)
		}
	}
	if i := bigBufClass(4 << 20); i != len(bigBufPools)-1 {
		t.Errorf("the largest class is %d, want %d", i, len(bigBufPools)-1)
	}
}

// TestLentBufReturnsOnLastRelease checks the reference count of a lent read buffer.
func TestLentBufReturnsOnLastRelease(t *testing.T) {
	l := &lentBuf{buf: make([]byte, 10, 3<<20)} // not a class size: not pooled, no panic
	l.acquire()
	l.acquire()
	l.release()
	l.release()
	defer func() {
		if recover() == nil {
			t.Fatal("a release more than acquired did not panic")
		}
	}()
	l.release()
}

// TestReclaimerWaitsForQuiet checks that the reclaimer frees memory only after an
// interval without large releases, and once per wave of them.
func TestReclaimerWaitsForQuiet(t *testing.T) {
	bigReleased.Store(0)
	freed := make(chan struct{}, 10)
	r := &reclaimer{interval: 20 * time.Millisecond, free: func() { freed <- struct{}{} }}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.run(ctx); close(done) }()
	putBigBuf(make([]byte, 0, 16<<20)) // one very large buffer let go
	select {
	case <-freed:
	case <-time.After(5 * time.Second):
		t.Fatal("no reclaim after a large buffer was released")
	}
	time.Sleep(100 * time.Millisecond)
	if len(freed) != 0 {
		t.Fatalf("%d more reclaims without new releases", len(freed))
	}
	cancel()
	<-done
}

// TestLargeWriteCountsProgress writes 16 MiB (a lent frame and a tail) to a
// connection that takes it slowly (net.Pipe: each write waits for the reader) and
// checks that each 4 MiB piece taken counts as the backend's progress, so a large
// value on a slow link is not taken for a hung backend (backend_timeout).
func TestLargeWriteCountsProgress(t *testing.T) {
	gwSide, backendSide := net.Pipe()
	defer gwSide.Close()
	defer backendSide.Close()
	be := &backend{conn: gwSide}
	be.progressAt = time.Now().Add(-time.Hour)
	var seen []time.Time
	got := make(chan int)
	go func() { // the backend: reads 64 KiB at a time, noting the progress time
		buf := make([]byte, 256<<10)
		total := 0
		for total < 16<<20 {
			n, err := backendSide.Read(buf)
			if err != nil {
				break
			}
			total += n
			be.mu.Lock()
			if len(seen) == 0 || !be.progressAt.Equal(seen[len(seen)-1]) {
				seen = append(seen, be.progressAt)
			}
			be.mu.Unlock()
		}
		got <- total
	}()
	frame := bytes.Repeat([]byte("f"), 14<<20)
	tail := bytes.Repeat([]byte("t"), 16<<20-len(frame))
	n, err := be.write(gwSide, newSockWriter(gwSide), net.Buffers{frame}, tail)
	if err != nil || n != 16<<20 {
		t.Fatalf("write: %d bytes, %v", n, err)
	}
	if total := <-got; total != 16<<20 {
		t.Fatalf("the backend read %d bytes", total)
	}
	// The stale time, then one per piece but the last: 16 MiB is 4 pieces.
	if len(seen) != 4 {
		t.Fatalf("progress times seen: %d (%v), want the old one and 3 new ones", len(seen), seen)
	}
}

// TestReclaimStateDormant checks when sessions going dormant make the reclaimer
// collect: after a wave of dormantReclaim or more followed by a quiet interval, not
// for a few, and never while they keep going dormant (a busy gateway with clients
// that idle and wake would otherwise collect every few seconds).
func TestReclaimStateDormant(t *testing.T) {
	cases := []struct {
		name    string
		dormant []int64 // sessions gone dormant so far, at each look
		big     []int64 // large bytes let go in each interval (nil: none)
		want    []bool
	}{
		{"a pool gone idle, then quiet", []int64{0, 600, 1100, 1100, 1100}, nil, []bool{false, false, false, true, false}},
		{"a few, then quiet", []int64{0, 10, 20, 20, 20}, nil, []bool{false, false, false, false, false}},
		{"a steady trickle", []int64{100, 200, 300, 400, 500, 600, 700, 800, 900}, nil, []bool{false, false, false, false, false, false, false, false, false}},
		{"a trickle, a pause long enough", []int64{200, 400, 600, 600, 700}, nil, []bool{false, false, false, true, false}},
		{"a large buffer while sessions trickle", []int64{100, 200, 300, 400}, []int64{64 << 20, 0, 0, 0}, []bool{false, true, false, false}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st := reclaimState{dormantSeen: 0}
			for i, d := range c.dormant {
				var big int64
				if i < len(c.big) {
					big = c.big[i]
				}
				if got := st.tick(big, d); got != c.want[i] {
					t.Fatalf("look %d (dormant so far %d, big %d): reclaim %v, want %v", i, d, big, got, c.want[i])
				}
			}
		})
	}
}

// TestDropReadBufOneOwner: a session's read buffer has one owner. The parked
// reader's buffer, once the session is done with it, goes back through the reader to
// its own pool and never also into the big buffers' pools (it is of a class size: a
// second owner there would read a backend's replies into a buffer a client's
// commands are read into). (Under the race detector sync.Pool drops some of what it
// is given: that only makes a wrong second owner less likely to be seen here.)
func TestDropReadBufOneOwner(t *testing.T) {
	client, server := tcpPair(t)
	s := &session{largeReads: true} // reads of largeReadBufSize, a big buffer class
	parked := newParkedReader(server, s.getReadBuf, putReadBuf)
	if parked == nil {
		t.Skip("no parked reader on this platform")
	}
	s.parked = parked
	class := bigBufClass(largeReadBufSize)
	if class < 0 {
		t.Fatalf("largeReadBufSize %d is not a big buffer class: the test proves nothing", largeReadBufSize)
	}
	inBigPool := func(b []byte) bool { // drains the class's pool
		found := false
		for {
			p, ok := bigBufPools[class].Get().(*[]byte)
			if !ok {
				return found
			}
			found = found || unsafe.SliceData(*p) == unsafe.SliceData(b)
		}
	}
	for range 5 {
		if _, err := client.Write([]byte("PING\r\n")); err != nil {
			t.Fatal(err)
		}
		b, err := parked.read()
		if err != nil {
			t.Fatal(err)
		}
		if cap(b) != largeReadBufSize {
			t.Fatalf("read into a buffer of %d bytes, want %d", cap(b), largeReadBufSize)
		}
		s.dropReadBuf(b[:0])
		if parked.bp != nil {
			t.Fatal("the parked reader still holds its buffer after the session dropped it")
		}
		if inBigPool(b) {
			t.Fatal("the parked reader's buffer went into the big buffers' pool as well")
		}
	}
}

// TestLargeReadsFollowTheClient: a session reads small buffers until its client sends
// a command larger than one, large ones from then on, and small ones again after
// smallReadsBack reads a small buffer would have held.
func TestLargeReadsFollowTheClient(t *testing.T) {
	s := &session{}
	size := func() int { bp := s.getReadBuf(); defer putReadBuf(bp); return cap(*bp) }
	if got := size(); got != readBufSize {
		t.Fatalf("first read buffer %d bytes, want %d", got, readBufSize)
	}
	s.largeReads = true // readMore saw a command announced larger than readBufSize
	for i := range 3 * smallReadsBack {
		if got := size(); got != largeReadBufSize {
			t.Fatalf("read %d after a large command: buffer %d bytes, want %d", i, got, largeReadBufSize)
		}
		n := 100
		if i%(smallReadsBack-1) == 0 {
			n = 20 << 10 // a large read now and then keeps large reads
		}
		s.noteReadSize(n)
	}
	for range smallReadsBack {
		s.noteReadSize(100)
	}
	if got := size(); got != readBufSize {
		t.Fatalf("after %d small reads: buffer %d bytes, want %d", smallReadsBack, got, readBufSize)
	}
}

// TestOneLargeCommandMakesLargeReads: a burst of one command larger than a small read
// buffer (which readAvailable read whole after a full small read) turns large reads
// on; a small command, a pipeline of small ones as large in all, a command beyond
// largeReadBufSize (read into a buffer of its own size) or a burst of none do not.
func TestOneLargeCommandMakesLargeReads(t *testing.T) {
	for _, c := range []struct {
		cmds, size int
		large      bool
	}{
		{1, 16<<10 + 60, true},
		{1, largeReadBufSize, true},
		{1, 100, false},
		{1, readBufSize, false},
		{16, 17 << 10, false},
		{1, largeReadBufSize + 1, false},
		{0, 16 << 10, false},
	} {
		s := &session{smallReads: 3}
		s.noteBurst(c.cmds, c.size)
		if s.largeReads != c.large {
			t.Errorf("a burst of %d commands in %d bytes: large reads %v, want %v", c.cmds, c.size, s.largeReads, c.large)
		}
		if c.large && s.smallReads != 0 {
			t.Errorf("a burst of %d commands in %d bytes left %d small reads counted", c.cmds, c.size, s.smallReads)
		}
		if want := c.cmds > 1; c.cmds > 0 && s.pipelines != want {
			t.Errorf("a burst of %d commands: pipelines %v, want %v", c.cmds, s.pipelines, want)
		}
	}
}
