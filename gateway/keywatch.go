package gateway

import (
	"github.com/dynode/dynode-broadcaster/protocols"
	"github.com/dynode/dynode-broadcaster/protocols/resp"
)

// keyRef is a key of one database.
type keyRef struct {
	db  int
	key string
}

// keyWatch tells the clients waiting on keys that a write touched them: clients that
// WATCH keys (their EXEC then fails) and clients blocked in BLPOP, XREAD BLOCK...
// (they try again). The gateway sees every write, in the global order: the sequencer
// calls touched for each write it queues, under its lock, so a watcher registered
// under the same lock sees exactly the writes ordered after it. Which keys a write
// changes comes from Redis's key specifications (resp.WrittenKeys). Everything here
// is guarded by the sequencer's mutex.
type keyWatch struct {
	byKey   map[keyRef][]*keyWaiter
	waiters map[*keyWaiter]struct{}
	parser  resp.CommandParser
}

// keyWaiter is one client waiting on keys.
type keyWaiter struct {
	keys []keyRef
	// fifo: a blocked pop. Of the pops waiting on a key, a write wakes only the first
	// (Redis serves blocked clients first come, first served); the next is woken when
	// that one is served or leaves. Watchers and stream readers are all touched.
	fifo bool
	// touch runs under the sequencer's lock when a write touches one of keys.
	touch func()
}

// active reports whether any client waits on keys (caller holds the sequencer lock).
func (k *keyWatch) active() bool { return len(k.waiters) > 0 }

// add registers w (caller holds the sequencer lock).
func (k *keyWatch) add(w *keyWaiter) {
	if k.byKey == nil {
		k.byKey, k.waiters = map[keyRef][]*keyWaiter{}, map[*keyWaiter]struct{}{}
	}
	k.waiters[w] = struct{}{}
	for _, ref := range w.keys {
		k.byKey[ref] = append(k.byKey[ref], w)
	}
}

// remove unregisters w and wakes, for each of its keys, the blocked pop now first in
// line (it may find what w left). Caller holds the sequencer lock.
func (k *keyWatch) remove(w *keyWaiter) {
	if _, ok := k.waiters[w]; !ok {
		return
	}
	delete(k.waiters, w)
	for _, ref := range w.keys {
		list := k.byKey[ref]
		for i, x := range list {
			if x == w {
				list = append(list[:i:i], list[i+1:]...)
				break
			}
		}
		if len(list) == 0 {
			delete(k.byKey, ref)
			continue
		}
		k.byKey[ref] = list
		if w.fifo {
			k.touchKey(ref, nil)
		}
	}
}

// touchKey touches the waiters of one key: every watcher and stream reader, and the
// first blocked pop (but not self, the client whose attempt wrote the key).
func (k *keyWatch) touchKey(ref keyRef, self *keyWaiter) {
	first := true
	for _, w := range k.byKey[ref] {
		if w == self {
			continue
		}
		if w.fifo {
			if !first {
				continue
			}
			first = false
		}
		w.touch()
	}
}

// touchDB touches every waiter with a key in db (-1: every database), but self.
func (k *keyWatch) touchDB(db int, self *keyWaiter) {
	for w := range k.waiters {
		if w == self {
			continue
		}
		for _, ref := range w.keys {
			if db < 0 || ref.db == db {
				w.touch()
				break
			}
		}
	}
}

// touched runs for every write the sequencer queues (caller holds its lock).
func (k *keyWatch) touched(it *queuedCmd) {
	if it.class == protocols.Read {
		return
	}
	cmd, _, err := k.parser.Next(it.frame)
	defer k.parser.Reset() // cmd.Args is the parser's until then
	if err != nil || cmd.Args == nil {
		return
	}
	switch resp.WrittenKeys(cmd.Args, func(key []byte, db int) {
		if db < 0 {
			db = it.db &^ resp3Bit
		}
		if _, ok := k.byKey[keyRef{db, string(key)}]; ok {
			k.touchKey(keyRef{db, string(key)}, it.self)
		}
	}) {
	case resp.KeysUnknown, resp.KeysDatabase:
		k.touchDB(it.db&^resp3Bit, it.self)
	case resp.KeysAllDatabases:
		k.touchDB(-1, it.self)
	}
}
