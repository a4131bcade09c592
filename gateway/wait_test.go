package gateway_test

import (
	"syscall"
	"testing"
	"time"
)

// TestWait: WAIT numbackends timeout counts the backends that acknowledged every
// write the client sent before it, as Redis's WAIT counts replicas. With one backend
// hung (SIGSTOP), WAIT 2 times out and says 1; WAIT 1 returns at once; once the
// backend resumes, WAIT 2 says 2. Pipelined commands after a WAIT are answered after
// it, in order.
func TestWait(t *testing.T) {
	h := withRedis(t, 2)
	c := h.client(t, 0)
	c.Set(ctx, "a", "1", 0)
	if n, err := c.Wait(ctx, 2, 0).Result(); err != nil || n != 2 {
		t.Fatalf("WAIT 2 0 = %d, %v", n, err)
	}
	if err := h.backends[1].Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = h.backends[1].Signal(syscall.SIGCONT) }()
	c.Set(ctx, "b", "2", 0)
	start := time.Now()
	if n, err := c.Wait(ctx, 2, 300*time.Millisecond).Result(); err != nil || n != 1 {
		t.Fatalf("WAIT 2 300 with backend 1 stopped = %d, %v", n, err)
	}
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Fatalf("WAIT 2 300 returned after %v", d)
	}
	if n, err := c.Wait(ctx, 1, 0).Result(); err != nil || n != 1 {
		t.Fatalf("WAIT 1 0 = %d, %v", n, err)
	}
	other := h.client(t, 0) // another client wrote nothing: both backends count for it
	if n, err := other.Wait(ctx, 2, 100*time.Millisecond).Result(); err != nil || n != 2 {
		t.Fatalf("WAIT 2 of a client that wrote nothing = %d, %v", n, err)
	}
	if err := h.backends[1].Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	if n, err := c.Wait(ctx, 2, 5000).Result(); err != nil || n != 2 {
		t.Fatalf("WAIT 2 after SIGCONT = %d, %v", n, err)
	}
	pipe := c.Pipeline()
	set := pipe.Set(ctx, "p", "x", 0)
	wait := pipe.Do(ctx, "WAIT", 2, 1000)
	get := pipe.Get(ctx, "p")
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	if set.Val() != "OK" || wait.Val() != int64(2) || get.Val() != "x" {
		t.Fatalf("pipelined SET, WAIT, GET = %q %d %q", set.Val(), wait.Val(), get.Val())
	}
	if err := c.Do(ctx, "WAIT", "x", "0").Err(); err == nil || err.Error() != "ERR value is not an integer or out of range" {
		t.Fatalf("WAIT x 0: %v", err)
	}
	if err := c.Do(ctx, "WAIT", "1", "-1").Err(); err == nil || err.Error() != "ERR timeout is negative" {
		t.Fatalf("WAIT 1 -1: %v", err)
	}
	h.converged(t)
}
