// Package wait is for tests that start real servers and processes: they
// poll for the state they expect instead of sleeping a guessed time.
package wait

import (
	"testing"
	"time"
)

// For polls cond every 5 ms until it holds, and fails t if d passes first;
// what says what was awaited.
func For(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", d, what)
		}
	}
}
