package discovery

import (
	"context"
	"testing"
)

func TestStatic(t *testing.T) {
	if _, err := NewStatic([]string{"a:1", "a:1"}); err == nil {
		t.Fatal("duplicate backend accepted")
	}
	if _, err := NewStatic([]string{"nohost"}); err == nil {
		t.Fatal("address without port accepted")
	}
	s, err := NewStatic([]string{"a:1", "b:2"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ch := s.Watch(ctx)
	if got := <-ch; len(got) != 2 || got[1] != "b:2" {
		t.Fatalf("list = %v", got)
	}
	cancel()
	if _, open := <-ch; open {
		t.Fatal("channel not closed after ctx ended")
	}
}
