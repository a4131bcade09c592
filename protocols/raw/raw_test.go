package raw

import "testing"

func TestChunkPooling(t *testing.T) {
	bp := ReadBuffer()
	n := copy(*bp, "hello")
	c := NewChunk(bp, n)
	if string(c.Bytes()) != "hello" || c.Len() != 5 {
		t.Fatalf("chunk = %q", c.Bytes())
	}
	c.Hold(3)
	for range 3 {
		c.Release()
	}
	defer func() {
		if recover() == nil {
			t.Fatal("over-release did not panic")
		}
	}()
	c.Release()
}

// TestChunkSize: a short read is kept in a buffer of its size class (at most 4x its
// bytes, 512 at least), a full one in its read buffer; the bytes are the read's.
func TestChunkSize(t *testing.T) {
	for _, tc := range []struct{ n, size int }{
		{1, 512}, {512, 512}, {513, 2 << 10}, {5000, 8 << 10}, {ChunkSize / 4, ChunkSize / 4},
		{ChunkSize/4 + 1, ChunkSize}, {ChunkSize, ChunkSize},
	} {
		bp := ReadBuffer()
		for i := range tc.n {
			(*bp)[i] = byte(i * 7)
		}
		c := NewChunk(bp, tc.n)
		c.Hold(1)
		if c.Len() != tc.n || c.Size() != tc.size || cap(c.Bytes()) < tc.n {
			t.Errorf("read of %d: Len %d Size %d, want size %d", tc.n, c.Len(), c.Size(), tc.size)
		}
		for i, b := range c.Bytes() {
			if b != byte(i*7) {
				t.Fatalf("read of %d: byte %d = %d, want %d", tc.n, i, b, byte(i*7))
			}
		}
		if tc.size < ChunkSize && c.Size()*4 < tc.n {
			t.Errorf("read of %d kept in %d bytes", tc.n, c.Size())
		}
		c.Release()
	}
}

func TestParseReplyMode(t *testing.T) {
	for s, want := range map[string]ReplyMode{"all": ReplyAll, "primary": ReplyPrimary, "none": ReplyNone} {
		if got, err := ParseReplyMode(s); err != nil || got != want {
			t.Errorf("%s: %v %v", s, got, err)
		}
	}
	if _, err := ParseReplyMode("some"); err == nil {
		t.Error("unknown mode accepted")
	}
}
