package procstat

import (
	"testing"
	"time"
)

func TestReadSelfSeesCPUAndMemory(t *testing.T) {
	before, err := Read(0)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64<<20)
	for i := range buf {
		buf[i] = byte(i)
	}
	deadline := time.Now().Add(150 * time.Millisecond)
	for x := 0; time.Now().Before(deadline); x++ {
		buf[x%len(buf)]++
	}
	after, err := Read(0)
	if err != nil {
		t.Fatal(err)
	}
	if after.CPU <= before.CPU {
		t.Errorf("CPU did not grow: %v -> %v", before.CPU, after.CPU)
	}
	if after.RSS < 64<<20 {
		t.Errorf("RSS %d below the 64 MiB just touched", after.RSS)
	}
	if _, err := Read(1 << 30); err == nil {
		t.Error("reading a process that does not exist succeeded")
	}
}
