package raw

import "testing"

func TestChunkPooling(t *testing.T) {
	c := NewChunk()
	n := copy(c.Space(), "hello")
	c.SetLen(n)
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
