package harness

import (
	"net"
	"testing"
)

// FreePort never hands out the same port twice, even when nothing has
// bound the earlier ones yet (children start close together): 2,000 picks
// from the ~9,000 ports below the ephemeral range would otherwise collide
// hundreds of times.
func TestFreePortUnique(t *testing.T) {
	seen := make(map[string]bool)
	for i := range 2000 {
		addr, err := FreePort()
		if err != nil {
			t.Fatalf("pick %d: %v", i, err)
		}
		if seen[addr] {
			t.Fatalf("pick %d: %s handed out twice", i, addr)
		}
		seen[addr] = true
	}
	addr, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("the port FreePort returned cannot be bound: %v", err)
	}
	ln.Close()
}
