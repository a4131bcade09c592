package testserver

import (
	"os"
	"testing"
)

// CheckGenerated fails the test when the file at path is not want, the text the
// code generates; with update it first rewrites the file. regenerate says how to
// update it (the go test command with -update).
func CheckGenerated(t testing.TB, path, want string, update bool, regenerate string) {
	t.Helper()
	if update {
		if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Fatalf("%s is out of date: run %s", path, regenerate)
	}
}
