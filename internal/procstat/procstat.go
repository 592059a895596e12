// Package procstat reads a process's CPU time and memory from /proc, so a
// benchmark can charge CPU per request and bytes per connection to the
// process that spent them, measured by the kernel from outside.
package procstat

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"time"
)

// clockTick is the kernel's USER_HZ, 100 on every Linux we run on.
const clockTick = 100

// Sample is one reading of a process.
type Sample struct {
	CPU time.Duration // user + system time since the process started
	RSS int64         // resident set size, bytes
}

// Read samples process pid (0 means this process).
func Read(pid int) (Sample, error) {
	dir := "/proc/self"
	if pid > 0 {
		dir = "/proc/" + strconv.Itoa(pid)
	}
	stat, err := os.ReadFile(dir + "/stat")
	if err != nil {
		return Sample{}, fmt.Errorf("procstat: %w", err)
	}
	// The command name may hold spaces; fields start after its ')'.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return Sample{}, fmt.Errorf("procstat: malformed %s/stat", dir)
	}
	f := bytes.Fields(stat[i+1:])
	// Fields after ')' start at field 3 (state); utime is 14, stime 15, rss 24.
	if len(f) < 22 {
		return Sample{}, fmt.Errorf("procstat: short %s/stat", dir)
	}
	utime, err1 := strconv.ParseInt(string(f[11]), 10, 64)
	stime, err2 := strconv.ParseInt(string(f[12]), 10, 64)
	rssPages, err3 := strconv.ParseInt(string(f[21]), 10, 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return Sample{}, fmt.Errorf("procstat: unparsable %s/stat", dir)
	}
	return Sample{
		CPU: time.Duration(utime+stime) * time.Second / clockTick,
		RSS: rssPages * int64(os.Getpagesize()),
	}, nil
}
