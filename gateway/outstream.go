package gateway

import "net"

// sharedFrameMin is the size from which a client's command frame goes to the
// backends by reference instead of being copied into each backend's stream: one
// copy of a 64 MiB SET is written to every backend (writev), not three.
const sharedFrameMin = 64 << 10

// outStream is the bytes queued for a backend's writer, in order. Small frames are
// copied into the tail, so a pipeline of small commands is one buffer written with
// one write; a large frame lent by its session (appendShared) is referenced, not
// copied, and the writer sends the pieces with one writev.
type outStream struct {
	segs   [][]byte   // pieces before tail, in order: earlier tails and shared frames
	owners []*lentBuf // per piece of segs: the buffer a shared frame is in; nil for a tail
	tail   []byte     // bytes appended since the last shared frame
	n      int        // bytes in segs and tail
}

// len is the number of bytes queued.
func (o *outStream) len() int { return o.n }

// append copies b to the end of the stream.
func (o *outStream) append(b []byte) {
	o.tail = append(o.tail, b...)
	o.n += len(b)
}

// appendShared adds b, a frame in owner's buffer, by reference; the stream holds a
// reference to owner until the writer has written b.
func (o *outStream) appendShared(b []byte, owner *lentBuf) {
	owner.acquire()
	if len(o.tail) > 0 {
		o.segs, o.owners = append(o.segs, o.tail), append(o.owners, nil)
		o.tail = nil
	}
	o.segs, o.owners = append(o.segs, b), append(o.owners, owner)
	o.n += len(b)
}

// prepend puts a copy of b in front of everything queued.
func (o *outStream) prepend(b []byte) {
	if len(o.segs) == 0 {
		o.tail = append(append(make([]byte, 0, len(b)+len(o.tail)), b...), o.tail...)
	} else {
		o.segs = append([][]byte{append([]byte(nil), b...)}, o.segs...)
		o.owners = append([]*lentBuf{nil}, o.owners...)
	}
	o.n += len(b)
}

// bytes returns the queued bytes as one slice (a copy when there are shared pieces),
// for the rare paths that persist the stream.
func (o *outStream) bytes() []byte {
	if len(o.segs) == 0 {
		return o.tail
	}
	b := make([]byte, 0, o.n)
	for _, s := range o.segs {
		b = append(b, s...)
	}
	return append(b, o.tail...)
}

// set replaces the stream with b (retained).
func (o *outStream) set(b []byte) {
	releaseOwners(o.owners)
	clear(o.segs)
	o.segs, o.owners, o.tail, o.n = o.segs[:0], o.owners[:0], b, len(b)
}

// take moves everything queued into the writer's hands: the pieces before the tail
// are appended to vec and their owners to owners (release them once written), the
// tail is returned, and spare (emptied) becomes the new tail: in the steady state
// the writer and the stream swap two buffers.
func (o *outStream) take(vec net.Buffers, owners []*lentBuf, spare []byte) (net.Buffers, []*lentBuf, []byte) {
	vec, owners = append(vec, o.segs...), append(owners, o.owners...)
	clear(o.segs)
	clear(o.owners)
	tail := o.tail
	o.segs, o.owners, o.tail, o.n = o.segs[:0], o.owners[:0], spare[:0], 0
	return vec, owners, tail
}

// releaseOwners releases each non-nil owner and clears the slice.
func releaseOwners(owners []*lentBuf) {
	for _, l := range owners {
		if l != nil {
			l.release()
		}
	}
	clear(owners)
}
