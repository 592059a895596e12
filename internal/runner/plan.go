// Package runner is `hongbao run`: it plans how many server processes
// (nodes) and load-client processes a number of users needs on this box
// (open files per process, memory), checks the machine before starting
// anything (preflight.go), runs the seed's three phases with a monitor
// (run.go) and writes the report (report.go).
package runner

import (
	"fmt"

	"hongbao/internal/nodes"
)

// Sizing constants of a plan. The per-user figures are what one held
// connection costs: the kernel's socket memory for both ends (measured on
// this box's kind: ~4.8 KB per loopback connection, both ends together),
// the server's session and the load client's user record; a process has a
// fixed cost besides (runtime, event loops, histograms).
const (
	FilesReserve   = 500       // descriptors per process kept for listeners, logs, the runtime
	KernelPerConn  = 4800      // bytes of kernel memory per connection, both ends
	ServerPerUser  = 1500      // bytes of server user-space memory per user
	ClientPerUser  = 700       // bytes of load-client user-space memory per user
	ProcessBase    = 40 << 20  // bytes per process besides its users
	MaxUsers       = 1_000_000 // the default --users is the largest the box allows, up to this
	MemoryHeadroom = 0.85      // share of MemAvailable a plan may use
	minPerProcess  = 100       // a process that cannot hold this many users is not worth planning
	maxProcesses   = 4000      // sanity bound of nodes + clients
)

// Plan says how a run is laid out.
type Plan struct {
	Users      int    `json:"users"`
	Nodes      int    `json:"nodes"`
	Clients    int    `json:"clients"`
	PerProcess int    `json:"max_users_per_process"` // from RLIMIT_NOFILE
	MemNeed    uint64 `json:"memory_needed_bytes"`
	// GoMaxProcs is the GOMAXPROCS every node and client is started with
	// (0: Go's default, one per core); see ChildGoMaxProcs.
	GoMaxProcs int       `json:"gomaxprocs_per_process,omitempty"`
	Map        nodes.Map `json:"-"`
	// ClientRanges[i] is the first and last user of client process i.
	ClientRanges [][2]uint32 `json:"-"`
}

// PerProcess is how many users one process may hold with files open files.
func PerProcess(files uint64) int {
	if files <= FilesReserve {
		return 0
	}
	return int(min(files-FilesReserve, 1<<31-1))
}

// MemoryFor is the memory a run of users over procs processes needs.
func MemoryFor(users, procs int) uint64 {
	return uint64(users)*(KernelPerConn+ServerPerUser+ClientPerUser) + uint64(procs)*ProcessBase
}

// MaxUsersFor is the most users a box with files open files per process
// and memAvail bytes available can run (at most MaxUsers).
func MaxUsersFor(files, memAvail uint64) int {
	per := PerProcess(files)
	if per < minPerProcess {
		return 0
	}
	budget := float64(memAvail) * MemoryHeadroom
	perUser := float64(KernelPerConn+ServerPerUser+ClientPerUser) + 2*float64(ProcessBase)/float64(per)
	return min(MaxUsers, int(budget/perUser))
}

// MakePlan lays out users over nodes and clients (0: as few as the
// open-file limit allows). Clients split the users with the same map as
// the nodes, so with as many clients as nodes each client covers exactly
// one node's users and talks to one server address.
func MakePlan(users, nodesN, clients int, files uint64) (Plan, error) {
	per := PerProcess(files)
	if users < 1 {
		return Plan{}, fmt.Errorf("%w: --users must be at least 1", ErrRefused)
	}
	if per < minPerProcess {
		return Plan{}, fmt.Errorf("%w: a process may open only %d files; at least %d are needed (raise 'ulimit -n')", ErrRefused, files, FilesReserve+minPerProcess)
	}
	need := (users + per - 1) / per
	if nodesN == 0 {
		nodesN = need
	}
	if clients == 0 {
		clients = nodesN
	}
	if nodesN < need || clients < need {
		return Plan{}, fmt.Errorf("%w: %d users need at least %d server processes and %d client processes "+
			"(a process may open %d files, so hold at most %d users); asked for %d nodes and %d clients",
			ErrRefused, users, need, need, files, per, nodesN, clients)
	}
	if nodesN > users || clients > users || nodesN+clients > maxProcesses {
		return Plan{}, fmt.Errorf("%w: %d nodes and %d clients for %d users: need nodes, clients <= users and nodes + clients <= %d",
			ErrRefused, nodesN, clients, users, maxProcesses)
	}
	m, err := nodes.New(uint32(users), nodesN)
	if err != nil {
		return Plan{}, fmt.Errorf("%w: %v", ErrRefused, err)
	}
	cm, err := nodes.New(uint32(users), clients)
	if err != nil {
		return Plan{}, fmt.Errorf("%w: %v", ErrRefused, err)
	}
	p := Plan{Users: users, Nodes: nodesN, Clients: clients, PerProcess: per, Map: m,
		MemNeed: MemoryFor(users, nodesN+clients)}
	for i := 0; i < clients; i++ {
		f, t := cm.Range(i)
		p.ClientRanges = append(p.ClientRanges, [2]uint32{f, t})
	}
	return p, nil
}

// ChildGoMaxProcs is the GOMAXPROCS for each node and client of p on a box
// with cpus cores, when the runner's environment sets none (env is its
// GOMAXPROCS; a value there is the user's choice and children inherit it).
//
// When the processes outnumber the cores, each gets one P. With two, an
// event loop asleep in epoll_wait leaves its P in a system call while the
// other P is idle; the runtime's sysmon then polls every 20 µs to 10 ms for
// 10 ms before it takes the P back, each time the loop wakes. Over 104
// processes that polling was an eighth of all CPU samples at a million
// users, and the loops waited for its wake-ups: measured on this box
// (1,000,000 users, four runs with two Ps and three with one), one P per
// process cut the processes' CPU from 157-174 s to 131-142 s and the p99
// at 2,000 shakes/s from 77-111 ms to 18-34 ms.
func ChildGoMaxProcs(p Plan, cpus int, env string) int {
	if env != "" || p.Nodes+p.Clients <= cpus {
		return 0
	}
	return 1
}

// childEnv is the environment a child gets in addition to the runner's.
func (p Plan) childEnv() []string {
	if p.GoMaxProcs <= 0 {
		return nil
	}
	return []string{fmt.Sprintf("GOMAXPROCS=%d", p.GoMaxProcs)}
}
