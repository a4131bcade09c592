package raw

import (
	"fmt"
	"sync"
	"sync/atomic"
)

// ChunkSize is the largest read from a client, and so the largest chunk.
const ChunkSize = 32 << 10

// Chunk is one read of client bytes, shared by every backend it is queued to.
type Chunk struct {
	buf  [ChunkSize]byte
	n    int
	refs atomic.Int32
}

var chunkPool = sync.Pool{New: func() any { return new(Chunk) }}

// NewChunk returns an empty chunk; fill Space() and call SetLen.
func NewChunk() *Chunk {
	c := chunkPool.Get().(*Chunk)
	c.n = 0
	return c
}

// Space is the chunk's whole buffer, to read into.
func (c *Chunk) Space() []byte { return c.buf[:] }

// SetLen records how many bytes of Space are valid.
func (c *Chunk) SetLen(n int) { c.n = n }

// Bytes are the chunk's valid bytes.
func (c *Chunk) Bytes() []byte { return c.buf[:c.n] }

// Len is len(Bytes()).
func (c *Chunk) Len() int { return c.n }

// Hold adds n users of the chunk; each calls Release once.
func (c *Chunk) Hold(n int) { c.refs.Add(int32(n)) }

// Release drops one user; the last one returns the chunk to the pool.
func (c *Chunk) Release() {
	switch r := c.refs.Add(-1); {
	case r == 0:
		chunkPool.Put(c)
	case r < 0:
		panic("raw: chunk released more often than held")
	}
}

// ReplyMode says which backend bytes a raw client receives.
type ReplyMode uint8

const (
	// ReplyAll forwards every backend's bytes (the original's behaviour). Each read
	// from a backend is written to the client whole; reads of different backends
	// interleave at read boundaries, in the order they arrive.
	ReplyAll ReplyMode = iota
	// ReplyPrimary forwards only the primary's bytes; the others are read and dropped.
	ReplyPrimary
	// ReplyNone forwards nothing; every backend's bytes are read and dropped.
	ReplyNone
)

// ParseReplyMode maps the raw_reply setting to a mode.
func ParseReplyMode(s string) (ReplyMode, error) {
	switch s {
	case "all":
		return ReplyAll, nil
	case "primary":
		return ReplyPrimary, nil
	case "none":
		return ReplyNone, nil
	}
	return 0, fmt.Errorf("raw: reply mode %q is not one of all, primary, none", s)
}
