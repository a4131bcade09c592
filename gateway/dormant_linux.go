//go:build linux

package gateway

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// idlePoller watches the connections of dormant sessions with an epoll instance of
// its own, in one goroutine: a client idle for client_dormant_after costs no goroutine (nor
// its stack) until it sends again. When one of its connections becomes readable (or
// is closed by its peer), the poller removes it and starts its session again.
//
// A dormant connection's descriptor is registered here as well as in Go's own poller
// (an epoll instance each; the kernel allows both). It must leave this one before it
// is closed, or the kernel would drop it silently and the session never wake:
// dormantConn.Close does that.
type idlePoller struct {
	epfd  int
	wakeR int // a pipe's read end in the epoll set: stop writes to wakeW
	wakeW int

	mu       sync.Mutex // guards dormant and stopping, and each dormantConn's state
	dormant  map[int32]*dormantConn
	stopping bool // wakeAll ran: no session goes dormant any more

	slept atomic.Int64 // sessions that went dormant, for the reclaimer
}

// newIdlePoller opens the epoll instance and its wake-up pipe.
func newIdlePoller() (*idlePoller, error) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	var pipe [2]int
	if err := syscall.Pipe2(pipe[:], syscall.O_CLOEXEC|syscall.O_NONBLOCK); err != nil {
		_ = syscall.Close(epfd)
		return nil, os.NewSyscallError("pipe2", err)
	}
	p := &idlePoller{epfd: epfd, wakeR: pipe[0], wakeW: pipe[1], dormant: map[int32]*dormantConn{}}
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(p.wakeR)}
	if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, p.wakeR, &ev); err != nil {
		p.closeFDs()
		return nil, os.NewSyscallError("epoll_ctl", err)
	}
	return p, nil
}

func (p *idlePoller) closeFDs() {
	_ = syscall.Close(p.epfd)
	_ = syscall.Close(p.wakeR)
	_ = syscall.Close(p.wakeW)
}

// sleep registers c, whose session goes dormant, idle since since. It reports
// false when c cannot go dormant (closed, the gateway shutting down, or the
// registration failed): its session keeps reading it.
func (p *idlePoller) sleep(c *dormantConn, since time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopping || c.closed {
		return false
	}
	raw, err := c.SyscallConn()
	if err != nil {
		return false
	}
	var regErr error
	if err := raw.Control(func(fd uintptr) {
		c.fd = int32(fd)
		// One-shot: the first event disarms it, so the session is started once.
		ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT, Fd: c.fd}
		regErr = syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_ADD, int(fd), &ev)
	}); err != nil || regErr != nil {
		return false
	}
	c.asleep, c.since = true, since
	p.dormant[c.fd] = c
	p.slept.Add(1)
	return true
}

// wakeLocked takes c out of the epoll set and starts its session; p.mu is held.
// The descriptor is still open: closing one goes through forget first.
func (p *idlePoller) wakeLocked(c *dormantConn, idleTimeout bool) {
	_ = syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_DEL, int(c.fd), nil)
	delete(p.dormant, c.fd)
	c.asleep = false
	c.session.resume(idleTimeout)
}

// forget runs before c's descriptor is closed: a dormant session is started again
// (its read then fails, and it ends as any session does), and c never sleeps again.
func (p *idlePoller) forget(c *dormantConn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	c.closed = true
	if c.asleep {
		p.wakeLocked(c, false)
	}
}

// wakeAll starts every dormant session, and keeps sessions from going dormant from
// now on: the gateway is shutting down (its sessions see that and end).
func (p *idlePoller) wakeAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stopping = true
	for _, c := range p.dormant {
		p.wakeLocked(c, false)
	}
}

// run waits for dormant connections to become readable and starts their sessions;
// about once a second it also ends those idle longer than readIdle() (0: never). It
// returns once stop is called, closing the epoll instance.
func (p *idlePoller) run(readIdle func() time.Duration) error {
	defer p.closeFDs()
	events := make([]syscall.EpollEvent, 128)
	lastSweep := time.Now()
	for {
		n, err := syscall.EpollWait(p.epfd, events, 1000)
		if err != nil {
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			p.wakeAll() // nothing would wake them: take them all up, none sleeps again
			return fmt.Errorf("idle poller: %w", os.NewSyscallError("epoll_wait", err))
		}
		p.mu.Lock()
		for _, ev := range events[:n] {
			if ev.Fd == int32(p.wakeR) {
				p.mu.Unlock()
				return nil
			}
			if c := p.dormant[ev.Fd]; c != nil {
				p.wakeLocked(c, false)
			}
		}
		if t := readIdle(); t > 0 && time.Since(lastSweep) >= time.Second {
			lastSweep = time.Now()
			for _, c := range p.dormant {
				if lastSweep.Sub(c.since) >= t {
					p.wakeLocked(c, true)
				}
			}
		}
		p.mu.Unlock()
	}
}

// stop ends run. Every session has ended before (Run stops it after shutdown).
func (p *idlePoller) stop() {
	_, _ = syscall.Write(p.wakeW, []byte{1})
}
