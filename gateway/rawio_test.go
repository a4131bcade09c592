package gateway

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// tcpPair is a connected pair of loopback TCP connections.
func tcpPair(t *testing.T) (a, b net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	a, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// TestSockReaderWriter: the backend connections' reader and writer behave as the
// connection's own Read and Write: a write larger than the socket's buffers arrives
// whole and in order at a slow reader, the end of the stream is io.EOF, a read
// deadline gives os.ErrDeadlineExceeded, and writing to a closed peer fails.
func TestSockReaderWriter(t *testing.T) {
	a, b := tcpPair(t)
	w, r := newSockWriter(a), newSockReader(b)
	want := largeRandom(8 << 20)
	got := make(chan []byte)
	go func() {
		var all []byte
		buf := make([]byte, 64<<10)
		for {
			n, err := r.Read(buf)
			all = append(all, buf[:n]...)
			if err != nil {
				if err != io.EOF {
					all = append(all, []byte(err.Error())...)
				}
				got <- all
				return
			}
			if len(all) < 1<<20 {
				time.Sleep(time.Millisecond) // slow at first: the writer waits for room
			}
		}
	}()
	if n, err := w.Write(want); n != len(want) || err != nil {
		t.Fatalf("Write = %d, %v; want %d, nil", n, err, len(want))
	}
	a.Close()
	if all := <-got; !bytes.Equal(all, want) {
		t.Fatalf("the reader got %d bytes that differ from the %d written, then EOF", len(all), len(want))
	}

	c, d := tcpPair(t)
	_ = d.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if _, err := newSockReader(d).Read(make([]byte, 10)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read past the deadline: %v, want os.ErrDeadlineExceeded", err)
	}
	d.Close()
	cw := newSockWriter(c)
	var err error
	for i := 0; i < 100 && err == nil; i++ { // the first writes may still be taken
		_, err = cw.Write(make([]byte, 64<<10))
		time.Sleep(time.Millisecond)
	}
	var op *net.OpError
	if !errors.As(err, &op) {
		t.Fatalf("writing to a closed peer: %v, want a *net.OpError", err)
	}
}

// largeRandom is n bytes that differ from one offset to the next.
func largeRandom(n int) []byte {
	b := make([]byte, n)
	x := uint32(2463534242)
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
	return b
}

// TestSockWriterBuffers: WriteBuffers writes every piece whole and in order, as
// net.Buffers.WriteTo does: more pieces than one writev takes (IOV_MAX), empty
// pieces, pieces larger than the socket's buffers at a slow reader (so that writes
// stop inside a piece and go on once there is room), and it leaves no piece behind.
func TestSockWriterBuffers(t *testing.T) {
	a, b := tcpPair(t)
	w := newSockWriter(a)
	data := largeRandom(12 << 20)
	var vec net.Buffers
	for off, i := 0, 0; off < len(data); i++ {
		size := []int{1, 0, 7, 4096, 3 << 20, 100, 0, 65 << 10}[i%8]
		if i < 3000 {
			size = min(size, 13) // many small pieces first: more than one writev's worth
		}
		size = min(size, len(data)-off)
		vec = append(vec, data[off:off+size])
		off += size
	}
	if len(vec) <= maxIovecs {
		t.Fatalf("only %d pieces, want more than %d", len(vec), maxIovecs)
	}
	got := make(chan []byte)
	go func() {
		all, buf := []byte(nil), make([]byte, 64<<10)
		for {
			n, err := b.Read(buf)
			all = append(all, buf[:n]...)
			if err != nil {
				got <- all
				return
			}
			if len(all) < 4<<20 {
				time.Sleep(time.Millisecond) // slow at first: the writer waits for room
			}
		}
	}()
	pieces := vec
	n, err := w.WriteBuffers(vec)
	if n != int64(len(data)) || err != nil {
		t.Fatalf("WriteBuffers = %d, %v; want %d, nil", n, err, len(data))
	}
	a.Close()
	if all := <-got; !bytes.Equal(all, data) {
		t.Fatalf("the reader got %d bytes that differ from the %d written", len(all), len(data))
	}
	for i, p := range pieces {
		if p != nil {
			t.Fatalf("piece %d (%d bytes) is still referenced after the write", i, len(p))
		}
	}
	for _, v := range w.iov[:cap(w.iov)] {
		if v.Base != nil {
			t.Fatal("the writer's scratch still points into a written buffer")
		}
	}
}
