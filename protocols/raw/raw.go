package raw

import (
	"fmt"
	"sync"
	"sync/atomic"
)

// ChunkSize is the largest read from a client, and so the largest chunk.
const ChunkSize = 128 << 10

// chunkClasses are the buffer sizes a chunk's bytes are kept in: a read that filled
// at most a quarter of its ChunkSize buffer is copied into the smallest class that
// holds it, so a chunk never holds more than 4x its bytes (512 bytes at least) while
// it waits in queues; a fuller read keeps its buffer, without a copy.
var chunkClasses = [...]int{512, 2 << 10, 8 << 10, ChunkSize / 4, ChunkSize}

// buffers is the pool of a client's read buffers (ChunkSize) and of the smaller
// classes chunks are copied into; the zero value is ready. Each holds *[]byte.
var buffers [len(chunkClasses)]sync.Pool

// ReadBuffer returns a pooled buffer of ChunkSize bytes to read a client into; hand
// it to NewChunk with what the read got, or back with PutReadBuffer.
func ReadBuffer() *[]byte { return getBuffer(len(chunkClasses) - 1) }

// PutReadBuffer gives back a ReadBuffer nothing was made of.
func PutReadBuffer(bp *[]byte) { buffers[len(chunkClasses)-1].Put(bp) }

func getBuffer(class int) *[]byte {
	if bp, ok := buffers[class].Get().(*[]byte); ok {
		return bp
	}
	b := make([]byte, chunkClasses[class])
	return &b
}

// Chunk is one read of client bytes, shared by every backend it is queued to.
type Chunk struct {
	bp    *[]byte // its pooled buffer, of chunkClasses[class] bytes
	class int
	n     int
	refs  atomic.Int32
}

var chunkPool = sync.Pool{New: func() any { return new(Chunk) }}

// NewChunk makes a chunk of the first n bytes read into bp (a ReadBuffer, which the
// chunk takes over or gives back): a full read keeps its buffer, a short one is
// copied into a buffer of its size.
func NewChunk(bp *[]byte, n int) *Chunk {
	c := chunkPool.Get().(*Chunk)
	c.n = n
	c.refs.Store(0)
	c.class = len(chunkClasses) - 1
	if n <= chunkClasses[c.class-1] {
		c.class = 0
		for chunkClasses[c.class] < n {
			c.class++
		}
		small := getBuffer(c.class)
		copy(*small, (*bp)[:n])
		PutReadBuffer(bp)
		bp = small
	}
	c.bp = bp
	return c
}

// Bytes are the chunk's bytes.
func (c *Chunk) Bytes() []byte { return (*c.bp)[:c.n] }

// Len is len(Bytes()).
func (c *Chunk) Len() int { return c.n }

// Size is the memory the chunk holds: what a queue of chunks is bounded by.
func (c *Chunk) Size() int { return chunkClasses[c.class] }

// Hold adds n users of the chunk; each calls Release once.
func (c *Chunk) Hold(n int) { c.refs.Add(int32(n)) }

// Release drops one user; the last one returns the chunk and its buffer to the
// pools.
func (c *Chunk) Release() {
	switch r := c.refs.Add(-1); {
	case r == 0:
		buffers[c.class].Put(c.bp)
		c.bp = nil
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
