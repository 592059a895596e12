package schedbatch

import (
	"os"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"
)

func TestApplySetsEveryThread(t *testing.T) {
	if err := Apply(); err != nil {
		t.Fatal(err)
	}
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range tasks {
		tid, _ := strconv.Atoi(task.Name())
		a, err := unix.SchedGetAttr(tid, 0)
		if err != nil {
			continue // exited meanwhile
		}
		if a.Policy != unix.SCHED_BATCH {
			t.Errorf("thread %d has policy %d, want SCHED_BATCH", tid, a.Policy)
		}
	}
	if !enabled() {
		t.Error("enabled() = false after Apply")
	}
}

// enabled reports whether the calling thread runs under SCHED_BATCH.
func enabled() bool {
	a, err := unix.SchedGetAttr(0, 0)
	return err == nil && a.Policy == unix.SCHED_BATCH
}
