// Package testserver starts real redis-server processes for tests, on 127.0.0.1 with
// free ports, waits until they answer, and stops them when the test ends. When the
// binary is missing the test is skipped, except under CI=true, where it fails: CI must
// never pass by testing nothing.
package testserver
