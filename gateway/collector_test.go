package gateway

import (
	"strconv"
	"strings"
	"testing"
)

// TestCollectorPolicies drives one command's replies through each policy without
// sockets: backend 0 is the preferred source, 3 backends addressed.
func TestCollectorPolicies(t *testing.T) {
	noReply := []byte("-ERR none\r\n")
	type event struct {
		backend int
		reply   string // "" = the backend failed
	}
	tests := []struct {
		name     string
		policy   ReplyPolicy
		events   []event
		decideAt int    // index of the event after which the reply is chosen
		want     string // the client reply
		diverged bool
	}{
		{"primary waits for the primary", ReplyPrimary, []event{{1, ":1"}, {2, ":1"}, {0, ":2"}}, 2, ":2", true},
		{"primary failed: first other reply", ReplyPrimary, []event{{0, ""}, {1, ":1"}, {2, ":1"}}, 1, ":1", false},
		{"first", ReplyFirst, []event{{2, ":3"}, {0, ":2"}, {1, ":2"}}, 0, ":3", true},
		{"quorum of 2", ReplyQuorum, []event{{0, ":2"}, {1, ":1"}, {2, ":1"}}, 2, ":1", true},
		{"quorum early", ReplyQuorum, []event{{1, ":1"}, {2, ":1"}, {0, ":2"}}, 1, ":1", true},
		{"quorum none: primary's", ReplyQuorum, []event{{0, ":0"}, {1, ":1"}, {2, ":2"}}, 2, ":0", true},
		{"all waits for all", ReplyAll, []event{{0, ":5"}, {1, ":5"}, {2, ":5"}}, 2, ":5", false},
		{"all, everyone failed", ReplyAll, []event{{0, ""}, {1, ""}, {2, ""}}, 2, "-ERR none", false},
		{"all, one failed: how many answered", ReplyAll, []event{{0, ":5"}, {1, ""}, {2, ":5"}}, 2, "-ERR dynode-broadcaster: write_reply=all: 2 of 3 backends answered", false},
		{"quorum, failures leave no majority", ReplyQuorum, []event{{0, ":5"}, {1, ""}, {2, ""}}, 2, "-ERR dynode-broadcaster: write_reply=quorum: 1 of 3 backends answered", false},
		{"quorum despite a failure", ReplyQuorum, []event{{0, ":5"}, {1, ""}, {2, ":5"}}, 2, ":5", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var finished *command
			b, i := threeBackendBatch(&batchSettings{policy: tt.policy, onFinish: func(_ *batch, c *command) { finished = c }}, "INCR", noReply)
			for n, ev := range tt.events {
				var reply []byte
				if ev.reply != "" {
					reply = []byte(ev.reply + "\r\n")
				}
				b.deliver(i, ev.backend, reply, false, noReply)
				decided := len(b.done) == 1
				if decided != (n >= tt.decideAt) {
					t.Fatalf("after event %d: decided=%v, want decision after event %d", n, decided, tt.decideAt)
				}
			}
			if got := string(b.appendReplies(nil)); got != tt.want+"\r\n" {
				t.Fatalf("client reply %q, want %q", got, tt.want+"\r\n")
			}
			if finished == nil || finished.diverged() != tt.diverged {
				t.Fatalf("finished=%v diverged=%v, want diverged=%v", finished != nil, finished != nil && finished.diverged(), tt.diverged)
			}
		})
	}
}

// TestCollectorLargeRepliesKeptOnce: a large reply (bigReply and up) from a backend
// that is not the reply source is compared by digest, not held; the source's is.
func TestCollectorLargeRepliesKeptOnce(t *testing.T) {
	big := func(c byte) string {
		return "$" + strconv.Itoa(bigReply) + "\r\n" + strings.Repeat(string(c), bigReply)
	}
	type event struct {
		backend int
		reply   string // "" = the backend failed
	}
	tests := []struct {
		name   string
		policy ReplyPolicy
		events []event
		want   string // the client reply
		kept   int    // large buffers held once every reply arrived
	}{
		{"primary last: one copy", ReplyPrimary, []event{{1, big('a')}, {2, big('a')}, {0, big('a')}}, big('a'), 1},
		{"primary first: one copy", ReplyPrimary, []event{{0, big('a')}, {1, big('a')}, {2, big('a')}}, big('a'), 1},
		{"primary differs: its own", ReplyPrimary, []event{{1, big('b')}, {2, big('b')}, {0, big('a')}}, big('a'), 1},
		{"all: one copy", ReplyAll, []event{{2, big('a')}, {1, big('a')}, {0, big('a')}}, big('a'), 1},
		{"primary failed first: the others'", ReplyPrimary, []event{{0, ""}, {1, big('a')}, {2, big('a')}}, big('a'), 1},
		{"primary failed between: a later equal reply", ReplyPrimary, []event{{1, big('a')}, {0, ""}, {2, big('a')}}, big('a'), 1},
		{"primary failed last: no bytes to answer with", ReplyPrimary, []event{{1, big('a')}, {2, big('a')}, {0, ""}},
			"-ERR dynode-broadcaster: the reply source failed and the other backends' reply (" + strconv.Itoa(len(big('a'))+2) + " bytes) was not kept", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, i := threeBackendBatch(&batchSettings{policy: tt.policy}, "EVAL", []byte("-ERR none\r\n"))
			for _, ev := range tt.events {
				var reply []byte
				if ev.reply != "" {
					reply = []byte(ev.reply + "\r\n")
				}
				b.deliver(i, ev.backend, reply, false, []byte("-ERR none\r\n"))
			}
			if len(b.done) != 1 {
				t.Fatal("not decided after every reply")
			}
			if got := string(b.appendReplies(nil)); got != tt.want+"\r\n" {
				t.Fatalf("client reply %.80q (%d bytes), want %.80q", got, len(got), tt.want+"\r\n")
			}
			if len(b.big) != tt.kept {
				t.Fatalf("%d large replies held, want %d", len(b.big), tt.kept)
			}
		})
	}
}

// threeBackendBatch is a sealed batch of one command addressed to 3 backends,
// backend 0 its reply source; the gateway's own errors are "-ERR <msg>".
func threeBackendBatch(st *batchSettings, name string, noReply []byte) (*batch, int) {
	st.appendError = func(dst []byte, msg string) []byte { return append(append(append(dst, "-ERR "...), msg...), "\r\n"...) }
	b := newBatch(st)
	i := b.add(name, 0)
	b.mu.Lock()
	for range 3 {
		b.expectFrom(i)
	}
	b.cmds[i].srcQueued = true
	b.mu.Unlock()
	b.seal(noReply)
	return b, i
}

func TestRingOrder(t *testing.T) {
	var r ring
	for i := range 40 {
		r.push(pending{idx: int32(i)})
	}
	got := r.popInto(nil, 30)
	for i := range 30 {
		r.push(pending{idx: int32(40 + i)})
	}
	r.pushFront(pending{idx: -1}, 0)
	got = r.popInto(got, r.len())
	if got[30].idx != -1 {
		t.Fatalf("pushFront not at the head: %d", got[30].idx)
	}
	got = append(got[:30], got[31:]...)
	for i, p := range got {
		if int(p.idx) != i {
			t.Fatalf("entry %d has idx %d", i, p.idx)
		}
	}
}
