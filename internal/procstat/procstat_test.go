package procstat

import (
	"os"
	"testing"
)

func TestRSS(t *testing.T) {
	self, err := RSS(0)
	if err != nil || self <= 0 {
		t.Fatalf("RSS(0) = %d, %v", self, err)
	}
	if byPID, err := RSS(os.Getpid()); err != nil || byPID <= 0 {
		t.Fatalf("RSS(own pid) = %d, %v", byPID, err)
	}
	if _, err := RSS(-1); err == nil {
		t.Fatal("RSS of no process: no error")
	}
}
