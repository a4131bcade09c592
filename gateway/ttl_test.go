package gateway_test

import (
	"strconv"
	"testing"
	"time"
)

// TestAbsoluteTTLOnReplay: a backend that is down receives SET EX, SETEX and EXPIRE
// from its backlog 2 s late; with absolute_ttl (the default) its keys expire when the
// others' do, not 2 s later.
func TestAbsoluteTTLOnReplay(t *testing.T) {
	live := startRedisBackends(t, 1)[0]
	latePort := freePort(t)
	h := startGatewayPartial(t, []string{live.Addr, "127.0.0.1:" + strconv.Itoa(latePort)}, 1)
	c := h.client(t, 0)
	c.Set(ctx, "a", "1", 10*time.Second)
	c.Do(ctx, "SETEX", "b", "10", "1")
	c.Set(ctx, "c", "1", 0)
	c.Expire(ctx, "c", 10*time.Second)
	c.Do(ctx, "GETEX", "c", "PX", "10000")
	time.Sleep(2 * time.Second)
	late := startRedisOnPort(t, latePort)
	h.backends = []*redisServer{live, late}
	waitUp(t, h.gw, 2)
	h.drained(t)
	for _, k := range []string{"a", "b", "c"} {
		onLive, onLate := live.Client(0).PTTL(ctx, k).Val(), late.Client(0).PTTL(ctx, k).Val()
		if onLate > 8500*time.Millisecond || onLate <= 0 || absDur(onLive-onLate) > 500*time.Millisecond {
			t.Errorf("%s: PTTL %v on the backend that applied it 2 s late, %v on the other", k, onLate, onLive)
		}
	}
	// The expiry instant is the same millisecond on every backend: what is left of
	// the expiry race is the backends' clock skew.
	for _, k := range []string{"a", "b", "c"} {
		at0 := live.Client(0).Do(ctx, "PEXPIRETIME", k).Val()
		at1 := late.Client(0).Do(ctx, "PEXPIRETIME", k).Val()
		if at0 != at1 {
			t.Errorf("%s: PEXPIRETIME %v on one backend, %v on the other", k, at0, at1)
		}
	}
	h.converged(t)
}

func absDur(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}
