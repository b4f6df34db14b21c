// Package poll waits in tests for something that happens in the
// background: a delivery to arrive, a record to be written.
package poll

import (
	"testing"
	"time"
)

// Until calls fn every interval until it returns nil, and fails the test
// with fn's last error once timeout has passed.
func Until(t testing.TB, timeout, interval time.Duration, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("still failing after %s: %v", timeout, err)
		}
		time.Sleep(interval)
	}
}
