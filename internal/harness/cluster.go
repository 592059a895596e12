package harness

import (
	"cmp"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"hongbao/internal/adminauth"
	"hongbao/internal/load"
)

// ServerSpec describes a server child.
type ServerSpec struct {
	Users  int // refuse ids above (0: none)
	Budget int // admission budget, shakes/s
	Secret string
	Extra  []string // more flags
	Env    []string // more environment (NAME=value)
	// AdminToken is the admin API's bearer token ("": a new random one).
	AdminToken string
	// NoFile, if non-zero, is the server's open-file limit (soft and
	// hard, set by /bin/sh's ulimit before it execs the server).
	NoFile int
}

// ServerProc is a running server child with its admin client.
type ServerProc struct {
	*Proc
	Addr  string
	Admin *Admin
}

// StartServer starts `hongbao server` on free loopback ports and waits until
// it is healthy. Its log goes to dir/server.log, its ledger to dir/ledger.
func StartServer(bin, dir string, spec ServerSpec) (*ServerProc, error) {
	addr, err := FreePort()
	if err != nil {
		return nil, err
	}
	admin, err := FreePort()
	if err != nil {
		return nil, err
	}
	args := []string{"server", "--listen", addr, "--admin", admin, "--log-level", "warn",
		"--data-dir", filepath.Join(dir, "ledger")}
	if spec.Users > 0 {
		args = append(args, "--users", strconv.Itoa(spec.Users))
	}
	if spec.Budget > 0 {
		args = append(args, "--budget", strconv.Itoa(spec.Budget))
	}
	args = append(args, spec.Extra...)
	logf, err := os.Create(filepath.Join(dir, "server.log"))
	if err != nil {
		return nil, err
	}
	token := cmp.Or(spec.AdminToken, NewSecret())
	if spec.NoFile > 0 {
		args = append([]string{"-c", `ulimit -n ` + strconv.Itoa(spec.NoFile) + ` && exec "$0" "$@"`, bin}, args...)
		bin = "/bin/sh"
	}
	p, err := StartEnv("server", bin, args, secretEnv(spec.Secret, token, spec.Env), logf)
	if err != nil {
		logf.Close()
		return nil, err
	}
	go func() { <-p.Done(); logf.Close() }()
	sp := &ServerProc{Proc: p, Addr: addr, Admin: NewAdmin(admin)}
	sp.Admin.Token = token
	if err := sp.Admin.WaitHealthy(p, 10*time.Second); err != nil {
		_ = p.Stop(time.Second)
		return nil, fmt.Errorf("%w (log: %s)", err, filepath.Join(dir, "server.log"))
	}
	return sp, nil
}

// LoadSpec describes a load-client child.
type LoadSpec struct {
	Addr     string
	Users    int
	QPS      int
	Ramp     int
	Duration time.Duration
	Secret   string
	Name     string   // log file name (default "load")
	Extra    []string // more flags
	Env      []string // more environment (NAME=value)
	// AdminToken is its admin API's bearer token ("": a new random one).
	AdminToken string
}

// LoadProc is a running load client with its admin client.
type LoadProc struct {
	*Proc
	Admin *Admin
	log   string
}

// StartLoad starts `hongbao load --json`; its per-second lines go to
// dir/<name>.log.
func StartLoad(bin, dir string, spec LoadSpec) (*LoadProc, error) {
	if spec.Name == "" {
		spec.Name = "load"
	}
	admin, err := FreePort()
	if err != nil {
		return nil, err
	}
	args := []string{"load", "--addr", spec.Addr, "--users", strconv.Itoa(spec.Users),
		"--qps", strconv.Itoa(spec.QPS), "--ramp", strconv.Itoa(spec.Ramp),
		"--duration", spec.Duration.String(), "--admin", admin, "--json"}
	args = append(args, spec.Extra...)
	logPath := filepath.Join(dir, spec.Name+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	token := cmp.Or(spec.AdminToken, NewSecret())
	p, err := StartEnv(spec.Name, bin, args, secretEnv(spec.Secret, token, spec.Env), logf)
	if err != nil {
		logf.Close()
		return nil, err
	}
	go func() { <-p.Done(); logf.Close() }()
	a := NewAdmin(admin)
	a.Token = token
	return &LoadProc{Proc: p, Admin: a, log: logPath}, nil
}

// Summary waits for the load client to finish and decodes its JSON summary.
func (l *LoadProc) Summary() (*load.Summary, error) {
	<-l.Done()
	var s load.Summary
	if err := json.Unmarshal(l.Stdout(), &s); err != nil {
		return nil, fmt.Errorf("%s summary (exit: %v, log %s): %w", l.Name, l.exitErr(), l.log, err)
	}
	return &s, l.exitErr()
}

// secretEnv is a child's environment for its token secret and admin
// token, then more: secrets go to a child through its environment, which
// only its owner may read, never on its command line, which every user of
// the machine can read in ps and /proc/PID/cmdline.
func secretEnv(secret, adminToken string, more []string) []string {
	env := []string{"HONGBAO_SECRET=" + secret, adminauth.EnvToken + "=" + adminToken}
	return append(env, more...)
}

// NewSecret returns a random token secret for a run.
func NewSecret() string {
	b := make([]byte, 16)
	_, _ = io.ReadFull(rand.Reader, b)
	return hex.EncodeToString(b)
}
