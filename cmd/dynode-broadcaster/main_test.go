package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckConfig(t *testing.T) {
	var out, errOut bytes.Buffer
	seed := filepath.Join("..", "..", "configuration", "testdata", "seed.properties")
	if err := run(context.Background(), []string{"check-config", "-c", seed}, &out, &errOut); err != nil {
		t.Fatalf("check-config of the seed file: %v", err)
	}
	for _, want := range []string{"servers=127.0.0.1:6379\n", "port=9000\n", "discard_responses=false\n", "write_reply=primary\n"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("effective settings lack %q:\n%s", want, out.String())
		}
	}

	bad := filepath.Join(t.TempDir(), "bad.properties")
	if err := os.WriteFile(bad, []byte("servers=x\nprot=redis\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := run(context.Background(), []string{"check-config", "-c", bad}, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "servers (line 1)") || !strings.Contains(err.Error(), "prot (line 2): unknown setting") {
		t.Fatalf("check-config of a bad file: %v", err)
	}
	if err := run(context.Background(), []string{"check-config", "--port", "70000"}, &out, &errOut); err == nil {
		t.Fatal("an invalid flag value passed")
	}
}

func TestVersion(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"version"}, &out, &out); err != nil || !strings.HasPrefix(out.String(), "dynode-broadcaster ") {
		t.Fatalf("version: %q %v", out.String(), err)
	}
}
