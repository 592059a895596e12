package runner

import "runtime"

func cpus() int { return runtime.NumCPU() }
