package gateway

import "testing"

// TestDeepBurstsShareOneBound: a session reading ahead, whose backends are far away,
// takes bursts beyond maxBurstCap as its read-ahead buffer allows, all sessions
// together no more than deepBurstLimit commands beyond it, and each gives its share
// back once its burst is answered.
func TestDeepBurstsShareOneBound(t *testing.T) {
	gw := &Gateway{}
	newSession := func(readAhead int32) *session {
		return &session{gw: gw, burstCap: deepBurstCap, readAhead: readAhead, farTrips: farTripsToDeepen}
	}
	near := newSession(1 << 20)
	near.farTrips = farTripsToDeepen - 1
	if got := near.burstLimit(); got != maxBurstCap {
		t.Fatalf("a session with %d far round trips in a row may take %d commands, want %d", near.farTrips, got, maxBurstCap)
	}
	if got := newSession(0).burstLimit(); got != maxBurstCap {
		t.Fatalf("a session without read-ahead may take %d commands, want %d", got, maxBurstCap)
	}
	if got := newSession(largeReadBufSize).burstLimit(); got != maxBurstCap {
		t.Fatalf("a session with %d bytes read ahead may take %d commands, want %d", largeReadBufSize, got, maxBurstCap)
	}
	capped := newSession(1 << 20)
	capped.burstCap = 100 // large replies: the reply-size cap still holds
	if got := capped.burstLimit(); got != 100 {
		t.Fatalf("a session capped at 100 commands by its replies may take %d", got)
	}
	var deep []*session
	var granted int
	for range 3 {
		s := newSession(1 << 20)
		granted += s.burstLimit() - maxBurstCap
		deep = append(deep, s)
	}
	if granted != deepBurstLimit {
		t.Fatalf("three sessions reading 1 MiB ahead took %d commands beyond the cap, want the bound %d", granted, deepBurstLimit)
	}
	if got := gw.deepBurst.Load(); got != deepBurstLimit {
		t.Fatalf("the gateway counts %d commands taken, want %d", got, deepBurstLimit)
	}
	if got := newSession(1 << 20).burstLimit(); got != maxBurstCap {
		t.Fatalf("with the bound reached a session may take %d commands, want %d", got, maxBurstCap)
	}
	for _, s := range deep {
		s.releaseDeepBurst()
		s.releaseDeepBurst() // a second release gives nothing back
	}
	if got := gw.deepBurst.Load(); got != 0 {
		t.Fatalf("%d commands still counted after every burst was answered", got)
	}
}
