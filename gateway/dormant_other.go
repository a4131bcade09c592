//go:build !linux

package gateway

import (
	"sync/atomic"
	"time"
)

// idlePoller is Linux only (epoll): elsewhere sessions never go dormant, and an idle
// client keeps its goroutine.
type idlePoller struct{ slept atomic.Int64 }

func newIdlePoller() (*idlePoller, error)                { return nil, nil }
func (p *idlePoller) sleep(*dormantConn, time.Time) bool { return false }
func (p *idlePoller) forget(*dormantConn)                {}
func (p *idlePoller) wakeAll()                           {}
func (p *idlePoller) run(func() time.Duration) error     { return nil }
func (p *idlePoller) stop()                              {}
