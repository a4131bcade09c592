package main

import (
	"image/png"
	"os"
	"path/filepath"
	"testing"
)

// TestRender draws a chart from a small results file of bench/run.sh's format.
func TestRender(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "raw.tsv")
	rows := ""
	for _, target := range []string{"redis (direct)", "twemproxy", "dynode, 1 backend(s)"} {
		for _, p := range []string{"1", "16"} {
			for _, test := range []string{"set", "get"} {
				for _, rps := range []string{"1000", "1200", "1100"} {
					rows += target + "\t" + p + "\t" + test + "\t" + rps + "\t2.50\t10.00\n"
				}
			}
		}
	}
	if err := os.WriteFile(in, []byte(rows), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "redis.png")
	if err := render(in, out); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := png.DecodeConfig(f); err != nil {
		t.Fatal(err)
	}
	if m := medians(map[key][]float64{{"a", "1", "SET"}: {3, 1, 2}}, "a", "1", []string{"SET", "GET"}); m[0] != 2 || m[1] != 0 {
		t.Fatalf("medians %v", m)
	}
	if err := os.WriteFile(in, []byte("bad line\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := render(in, out); err == nil {
		t.Fatal("a malformed results file rendered")
	}
}
