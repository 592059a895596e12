package bench

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestBuildFloor(t *testing.T) {
	dir := t.TempDir()
	if _, err := BuildFloor(context.Background(), filepath.Join(dir, "nosuch"), dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a missing binary: %v, want ErrNotExist", err)
	}
	if _, err := exec.LookPath("cc"); err != nil {
		t.Skip("no C compiler (cc): install gcc to test building the floor")
	}
	bad := filepath.Join(dir, "bad.c")
	if err := os.WriteFile(bad, []byte("int main( {"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := BuildFloor(context.Background(), bad, dir); err == nil || !strings.Contains(err.Error(), "cc -O2") {
		t.Errorf("bad C source: %v, want the compiler's error", err)
	}
	exe, err := BuildFloor(context.Background(), "../../bench/floor.c", dir)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(exe); err != nil || st.Mode()&0o111 == 0 {
		t.Fatalf("built floor %s: %v %v", exe, st, err)
	}
	again, err := BuildFloor(context.Background(), exe, dir)
	if err != nil || again != exe {
		t.Errorf("a built binary is taken as it is: %q %v", again, err)
	}
}
