package main

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any goroutine outlives them. With
// TEST_RUN_DYNODE_MAIN=1 the test binary is the command itself (main), so tests can
// check its exit status and output.
func TestMain(m *testing.M) {
	if os.Getenv("TEST_RUN_DYNODE_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}
