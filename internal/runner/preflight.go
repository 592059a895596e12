package runner

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"hongbao/internal/limits"
)

// ErrRefused is returned, before anything is started, when a run cannot
// work on this machine; the message says what to change.
var ErrRefused = errors.New("run refused")

// System is what the preflight reads of the machine.
type System struct {
	Files     uint64 `json:"open_files_per_process"` // RLIMIT_NOFILE after raising soft to hard
	MemAvail  uint64 `json:"mem_available_bytes"`
	MemTotal  uint64 `json:"mem_total_bytes"`
	FileMax   uint64 `json:"fs_file_max"`
	NrOpen    uint64 `json:"fs_nr_open"`
	Somaxconn int    `json:"net_core_somaxconn"`
	Backlog   int    `json:"net_core_netdev_max_backlog"`
	PortLo    int    `json:"port_lo"`
	PortHi    int    `json:"port_hi"`
	CPUs      int    `json:"cpus"`
}

// ReadSystem reads the limits of this process and machine.
func ReadSystem() (System, error) {
	var s System
	f, err := limits.RaiseFiles()
	if err != nil {
		return s, err
	}
	s.Files = f
	mi, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return s, err
	}
	for _, line := range strings.Split(string(mi), "\n") {
		fs := strings.Fields(line)
		if len(fs) < 2 {
			continue
		}
		kb, _ := strconv.ParseUint(fs[1], 10, 64)
		switch fs[0] {
		case "MemAvailable:":
			s.MemAvail = kb << 10
		case "MemTotal:":
			s.MemTotal = kb << 10
		}
	}
	s.FileMax = readUint("/proc/sys/fs/file-max")
	s.NrOpen = readUint("/proc/sys/fs/nr_open")
	s.Somaxconn = int(readUint("/proc/sys/net/core/somaxconn"))
	s.Backlog = int(readUint("/proc/sys/net/core/netdev_max_backlog"))
	s.PortLo, s.PortHi, err = limits.PortRange()
	if err != nil {
		s.PortLo, s.PortHi = 32768, 60999
	}
	s.CPUs = cpus()
	return s, nil
}

func readUint(path string) uint64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	v, _ := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	return v
}

// Tunables: the sysctls a large run wants, and the value --tune sets.
const (
	WantSomaxconn = 65535 // listen backlog: a fast ramp queues thousands of connects per node
	// WantBacklog is the per-CPU queue of packets waiting for the network
	// softirq. Loopback traffic all passes through it; beyond it packets
	// are dropped, and each drop costs a retransmission 200 ms or more
	// later (a SYN: 1 s). At the default 1000, a million-user run dropped
	// 27 million packets: the ramp slowed to a crawl and 30,000 shakes/s
	// turned into a retransmission storm.
	WantBacklog = 65536
	WantPortLo  = 10240 // ephemeral range 10240-65535: more ports per source address
	WantPortHi  = 65535
)

// Check decides whether plan can run on sys. It returns the advice (what
// to change for a better run, with the exact commands) and an error
// wrapping ErrRefused when the run cannot work at all.
func Check(p Plan, sys System) (advice []string, err error) {
	var refuse []string
	if need := MemoryFor(p.Users, p.Nodes+p.Clients); float64(need) > float64(sys.MemAvail)*MemoryHeadroom {
		refuse = append(refuse, fmt.Sprintf("%d users over %d processes need about %.1f GiB of memory (kernel socket buffers included); %.1f GiB is available (%.0f%% may be used): ask for --users %d or fewer, or free memory",
			p.Users, p.Nodes+p.Clients, gib(need), gib(sys.MemAvail), MemoryHeadroom*100, MaxUsersFor(sys.Files, sys.MemAvail)))
	}
	// Every connection has two ends on this box, each an open file.
	if need := uint64(2*p.Users + 1000*(p.Nodes+p.Clients)); sys.FileMax != 0 && sys.FileMax < need {
		refuse = append(refuse, fmt.Sprintf("the system may open %d files in all (fs.file-max), the run needs about %d: run 'sysctl -w fs.file-max=%d'", sys.FileMax, need, need*2))
	}
	if sys.PortHi-sys.PortLo+1 < 1024 {
		refuse = append(refuse, fmt.Sprintf("the ephemeral port range %d-%d is too small: run 'sysctl -w net.ipv4.ip_local_port_range=\"%d %d\"'", sys.PortLo, sys.PortHi, WantPortLo, WantPortHi))
	}
	if len(refuse) > 0 {
		return nil, fmt.Errorf("%w:\n  - %s", ErrRefused, strings.Join(refuse, "\n  - "))
	}
	if sys.Somaxconn < 4096 && p.Users > 10000 {
		advice = append(advice, fmt.Sprintf("net.core.somaxconn is %d: a fast ramp overflows the listen queues (connects retry after 1 s); run 'sysctl -w net.core.somaxconn=%d' or pass --tune", sys.Somaxconn, WantSomaxconn))
	}
	if sys.Backlog < WantBacklog && p.Users > 100_000 {
		advice = append(advice, fmt.Sprintf("net.core.netdev_max_backlog is %d: loopback packets beyond it are dropped and resent 200 ms or more later; run 'sysctl -w net.core.netdev_max_backlog=%d' or pass --tune", sys.Backlog, WantBacklog))
	}
	if sys.PortHi-sys.PortLo+1 < 20000 && p.Users > 10000 {
		advice = append(advice, fmt.Sprintf("ephemeral ports %d-%d: clients spread over more source addresses; 'sysctl -w net.ipv4.ip_local_port_range=\"%d %d\"' or --tune widens it", sys.PortLo, sys.PortHi, WantPortLo, WantPortHi))
	}
	if sys.Files < 100_000 && p.Nodes > 1 {
		advice = append(advice, fmt.Sprintf("a process may open %d files, so %d users need %d server and %d client processes; with 'ulimit -n %d' (and fs.nr_open at least that) one server process would do",
			sys.Files, p.Users, p.Nodes, p.Clients, p.Users+FilesReserve))
	}
	return advice, nil
}

func gib(b uint64) float64 { return float64(b) / (1 << 30) }

// KernelNet is what the kernel's network stack counted since boot:
// packets dropped because a CPU's backlog was full, TCP segments
// retransmitted, and connections dropped because a listen queue was full.
// The runner reports the difference over the run.
type KernelNet struct {
	BacklogDrops    uint64 `json:"backlog_drops"`
	Retransmits     uint64 `json:"tcp_retransmits"`
	ListenOverflows uint64 `json:"listen_overflows"`
}

// ReadKernelNet reads /proc/net/softnet_stat, /proc/net/snmp and
// /proc/net/netstat; what cannot be read stays 0.
func ReadKernelNet() KernelNet {
	var k KernelNet
	if b, err := os.ReadFile("/proc/net/softnet_stat"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if fs := strings.Fields(line); len(fs) > 1 {
				v, _ := strconv.ParseUint(fs[1], 16, 64)
				k.BacklogDrops += v
			}
		}
	}
	k.Retransmits = snmpField("/proc/net/snmp", "Tcp:", "RetransSegs")
	k.ListenOverflows = snmpField("/proc/net/netstat", "TcpExt:", "ListenOverflows")
	return k
}

// snmpField reads one counter of the header/value line pairs of
// /proc/net/snmp and /proc/net/netstat.
func snmpField(path, prefix, name string) uint64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	lines := strings.Split(string(b), "\n")
	for i := 0; i+1 < len(lines); i++ {
		if !strings.HasPrefix(lines[i], prefix) || !strings.HasPrefix(lines[i+1], prefix) {
			continue
		}
		names, vals := strings.Fields(lines[i]), strings.Fields(lines[i+1])
		for j := range min(len(names), len(vals)) {
			if names[j] == name {
				v, _ := strconv.ParseUint(vals[j], 10, 64)
				return v
			}
		}
	}
	return 0
}

// Sub is the change from earlier to k.
func (k KernelNet) Sub(earlier KernelNet) KernelNet {
	return KernelNet{k.BacklogDrops - earlier.BacklogDrops, k.Retransmits - earlier.Retransmits, k.ListenOverflows - earlier.ListenOverflows}
}

// sysctl is one /proc/sys setting that --tune changes and puts back.
type sysctl struct {
	path, old, want string
}

// Tune applies the sysctls a large run wants and returns a function that
// puts the old values back.
func Tune(sys System) (restore func() []error, applied []string, err error) {
	var done []sysctl
	restore = func() []error {
		var errs []error
		for i := len(done) - 1; i >= 0; i-- {
			if e := os.WriteFile(done[i].path, []byte(done[i].old), 0o644); e != nil {
				errs = append(errs, e)
			}
		}
		return errs
	}
	var want []sysctl
	if sys.Somaxconn < WantSomaxconn {
		want = append(want, sysctl{path: "/proc/sys/net/core/somaxconn", want: strconv.Itoa(WantSomaxconn)})
	}
	if sys.Backlog < WantBacklog {
		want = append(want, sysctl{path: "/proc/sys/net/core/netdev_max_backlog", want: strconv.Itoa(WantBacklog)})
	}
	if sys.PortLo > WantPortLo || sys.PortHi < WantPortHi {
		want = append(want, sysctl{path: "/proc/sys/net/ipv4/ip_local_port_range", want: fmt.Sprintf("%d %d", min(sys.PortLo, WantPortLo), max(sys.PortHi, WantPortHi))})
	}
	for _, s := range want {
		b, e := os.ReadFile(s.path)
		if e != nil {
			restore()
			return nil, nil, fmt.Errorf("--tune: %w", e)
		}
		s.old = strings.TrimSpace(string(b))
		if e := os.WriteFile(s.path, []byte(s.want), 0o644); e != nil {
			restore()
			return nil, nil, fmt.Errorf("--tune: writing %s: %w (run as root, or set it yourself)", s.path, e)
		}
		done = append(done, s)
		applied = append(applied, fmt.Sprintf("%s: %s -> %s", strings.TrimPrefix(s.path, "/proc/sys/"), s.old, s.want))
	}
	return restore, applied, nil
}
