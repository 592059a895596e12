package harness

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"hongbao/internal/wait"
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

// TestStartEnvAddsToTheEnvironment: a child started with env has those
// variables and still the parent's.
func TestStartEnvAddsToTheEnvironment(t *testing.T) {
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep binary")
	}
	p, err := StartEnv("sleeper", sleep, []string{"30"}, []string{"GOMAXPROCS=1"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop(time.Second)
	// The environment shows once the child has replaced the fork's image.
	var env []string
	wait.For(t, 5*time.Second, "the child's environment", func() bool {
		raw, _ := os.ReadFile(fmt.Sprintf("/proc/%d/environ", p.Pid()))
		env = strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")
		return len(env) > 1
	})
	if !slices.Contains(env, "GOMAXPROCS=1") {
		t.Errorf("child's environment lacks GOMAXPROCS=1: %q", env)
	}
	if path := os.Getenv("PATH"); path != "" && !slices.Contains(env, "PATH="+path) {
		t.Errorf("child's environment lost the parent's PATH: %q", env)
	}
}
