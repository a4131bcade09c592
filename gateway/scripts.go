package gateway

import (
	"sync"
)

// scriptCache keeps the Lua scripts clients sent (EVAL, SCRIPT LOAD), so that a
// backend rebuilt by a resync, whose script cache is empty (scripts are not part of
// a Redis snapshot), gets them again before it rejoins: otherwise the first EVALSHA
// of a script it lacks would be refused there (NOSCRIPT) and applied everywhere else,
// and the backend would go out of sync again. SCRIPT FLUSH from a client empties it,
// as it empties every backend's. Bounded: past maxScriptCacheBytes new scripts are
// not kept (a resynced backend then lacks them; EVALSHA of one flags it again).
type scriptCache struct {
	mu     sync.Mutex // guards everything below
	bodies map[string]struct{}
	bytes  int
}

const maxScriptCacheBytes = 16 << 20

// note keeps a script body seen in EVAL or SCRIPT LOAD.
func (c *scriptCache) note(body []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.bodies[string(body)]; ok || c.bytes+len(body) > maxScriptCacheBytes {
		return
	}
	if c.bodies == nil {
		c.bodies = map[string]struct{}{}
	}
	c.bodies[string(body)] = struct{}{}
	c.bytes += len(body)
}

// flush forgets every script (SCRIPT FLUSH).
func (c *scriptCache) flush() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.bodies, c.bytes = nil, 0
}

// all returns every script body kept.
func (c *scriptCache) all() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]string, 0, len(c.bodies))
	for b := range c.bodies {
		out = append(out, b)
	}
	return out
}

// loadScripts loads every kept script on a backend through a side connection.
func (g *Gateway) loadScripts(c *sideConn) error {
	for _, body := range g.scripts.all() {
		if _, err := c.do("SCRIPT", "LOAD", body); err != nil {
			return err
		}
	}
	return nil
}
