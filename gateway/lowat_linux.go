package gateway

import (
	"fmt"
	"sync"
	"syscall"
)

// A client's socket that receives the rest of a large command raises its receive
// low-water mark (SO_RCVLOWAT) to the bytes still to come, so the kernel wakes the
// session once most of them are there instead of at every 64 KiB segment. On
// loopback the sender pays for every such wake-up (the receive path runs in its
// context): a client sending 1 MiB SETs through the gateway spent 35-40 % more CPU
// per command than through twemproxy, whose single busy thread is rarely asleep when
// data arrives. With the mark: the client's CPU at twemproxy's level, the gateway's
// own about 6 % lower, 0.84x -> 0.94x twemproxy's SETs (bench/RESULTS.md, eighth
// session). The mark never exceeds what the client is bound to send (the rest of the
// announced bulk), and it goes back to one byte before the next command is awaited,
// so nothing waits for bytes that will not come. Backend connections keep the default:
// on one connection carrying many replies the mark made large GETs slower.
const (
	lowatMin = 256 << 10 // fewer bytes to come: the default mark
	lowatMax = 1 << 20   // the mark for more
)

// recvLowatWorks: the kernel wakes epoll waiters by the mark and grows the receive
// buffer to hold it (Linux 4.18 on); before that a mark beyond the receive window
// could wait for ever.
var recvLowatWorks = sync.OnceValue(func() bool { return kernelAtLeast(4, 18) })

// adjustRecvLowat sets the mark of raw's socket for rem bytes still to come of the
// current command or reply; *cur is the mark set so far (0: the default). A failure
// leaves the default, which only costs wake-ups.
func adjustRecvLowat(raw syscall.RawConn, cur *int32, rem int) {
	want := int32(0)
	if rem >= lowatMin {
		want = int32(min(rem, lowatMax))
	}
	if want == *cur || raw == nil || !recvLowatWorks() {
		return
	}
	var err error
	if cerr := raw.Control(func(fd uintptr) {
		err = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVLOWAT, max(int(want), 1))
	}); cerr != nil || err != nil {
		want = 0 // closed, or refused: leave it
	}
	*cur = want
}

// kernelAtLeast reports whether the running kernel's release is major.minor or later.
func kernelAtLeast(major, minor int) bool {
	var u syscall.Utsname
	if syscall.Uname(&u) != nil {
		return false
	}
	rel := make([]byte, 0, len(u.Release))
	for _, c := range u.Release {
		if c == 0 {
			break
		}
		rel = append(rel, byte(c))
	}
	return releaseAtLeast(string(rel), major, minor)
}

// releaseAtLeast reports whether a kernel release string ("6.1.0-18-amd64",
// "4.18-rc1") is major.minor or later.
func releaseAtLeast(release string, major, minor int) bool {
	var maj, mnr int
	if n, _ := fmt.Sscanf(release, "%d.%d", &maj, &mnr); n != 2 {
		return false
	}
	return maj > major || maj == major && mnr >= minor
}
