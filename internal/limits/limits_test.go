package limits

import (
	"errors"
	"strings"
	"testing"
)

func TestParsePortRange(t *testing.T) {
	for in, want := range map[string][2]int{
		"32768\t60999\n": {32768, 60999},
		"1024 65535":     {1024, 65535},
	} {
		lo, hi, ok := ParsePortRange(in)
		if !ok || lo != want[0] || hi != want[1] {
			t.Errorf("%q: %d %d %v", in, lo, hi, ok)
		}
	}
	for _, in := range []string{"", "1", "5 4", "x 5", "1 70000"} {
		if _, _, ok := ParsePortRange(in); ok {
			t.Errorf("%q accepted", in)
		}
	}
}

func TestNeedFilesSaysTheFix(t *testing.T) {
	have, err := RaiseFiles()
	if err != nil {
		t.Fatal(err)
	}
	if err := NeedFiles(10, "test"); err != nil {
		t.Fatalf("10 connections refused: %v", err)
	}
	err = NeedFiles(int(have), "the test")
	if !errors.Is(err, ErrTooFewFiles) {
		t.Fatalf("%d connections with %d files: %v, want ErrTooFewFiles", have, have, err)
	}
	for _, want := range []string{"ulimit -n", "the test needs", "at most"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q does not say %q", err, want)
		}
	}
}
