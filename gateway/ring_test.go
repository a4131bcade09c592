package gateway

import "testing"

// TestRingShrinksOnceDrained checks that a backend's queue ring grown by a large
// backlog lets its memory go once every entry is answered, and keeps a small one.
func TestRingShrinksOnceDrained(t *testing.T) {
	var r ring
	for range 200_000 {
		r.push(pending{write: true})
	}
	grown := len(r.buf)
	var dst []pending
	for r.len() > 0 {
		dst = r.popInto(dst[:0], min(r.len(), 1000))
	}
	if len(r.buf) != 0 || r.popped != 200_000 {
		t.Fatalf("drained ring of %d entries keeps %d (popped %d)", grown, len(r.buf), r.popped)
	}
	r.push(pending{})
	if r.len() != 1 || r.pushed != 200_001 {
		t.Fatalf("after shrinking: len %d, pushed %d", r.len(), r.pushed)
	}
	for range 1000 { // a small queue keeps its room when it empties
		r.push(pending{})
	}
	r.popInto(nil, r.len())
	if len(r.buf) == 0 {
		t.Fatal("a small ring was dropped")
	}
}
