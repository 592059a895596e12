package main

import (
	"flag"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"hongbao/internal/adminauth"
)

// secretFlags are --secret and --secret-file. The token secret lets its
// holder mint a login token for any user, so it should not be on the
// command line, which every user of the machine can read in ps and
// /proc/PID/cmdline: --secret-file or HONGBAO_SECRET (the environment of
// a process is readable by its owner only) keep it out of sight.
type secretFlags struct{ value, file string }

func (s *secretFlags) define(fs *flag.FlagSet, what string) {
	fs.StringVar(&s.file, "secret-file", "", what+", read from this file (or give it in HONGBAO_SECRET)")
	fs.StringVar(&s.value, "secret", "", what+" on the command line, where every user sees it in ps and /proc: prefer --secret-file or HONGBAO_SECRET")
}

// resolve returns the secret ("" if none is given). A --secret given on
// the command line (not through HONGBAO_SECRET) is used with a warning.
func (s *secretFlags) resolve(c *command, log *slog.Logger) (string, error) {
	if s.file != "" && s.value != "" {
		return "", c.usageErr("give the secret once: --secret-file, or HONGBAO_SECRET (or --secret)")
	}
	if s.file != "" {
		v, err := adminauth.ReadFile(s.file, "secret", log)
		if err != nil {
			return "", c.usageErr("--secret-file: %v", err)
		}
		return v, nil
	}
	if s.value != "" && c.onCommandLine("secret") {
		log.Warn("--secret on the command line is visible to every user in ps and /proc/PID/cmdline; use --secret-file or HONGBAO_SECRET")
	}
	return s.value, nil
}

// onCommandLine reports whether flag name was given on the command line
// (not through the environment).
func (c *command) onCommandLine(name string) bool {
	set := false
	c.fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// adminFlags are the admin listener's access flags.
type adminFlags struct {
	tokenFile string
	auth      bool

	token, genPath string // the token; genPath is set when it was generated
}

func (a *adminFlags) define(fs *flag.FlagSet) {
	fs.StringVar(&a.tokenFile, "admin-token-file", "", "read the admin bearer token from this file (or give it in "+adminauth.EnvToken+"); without either, one is generated at start and written to a 0600 file whose path is logged")
	fs.BoolVar(&a.auth, "admin-auth", true, "require the admin token for pprof and the state-changing and private endpoints (=false only when --admin is a loopback address)")
}

// resolve returns the admin token of listener addr ("" when there is no
// listener or auth is off). Without one given, it makes one up, to be
// written to genPath by publish once the listener is up.
func (a *adminFlags) resolve(c *command, addr, genPath string, log *slog.Logger) (token string, off bool, err error) {
	if addr == "" {
		return "", false, nil
	}
	if !a.auth {
		if err := adminauth.CheckOff(addr); err != nil {
			return "", false, c.usageErr("--admin-auth=false: %v", err)
		}
		log.Warn("admin auth is off: anyone on this machine may use every admin endpoint", "admin", addr)
		return "", true, nil
	}
	tok, err := adminauth.Resolve(a.tokenFile, log)
	if err != nil {
		return "", false, c.usageErr("%v", err)
	}
	if tok == "" {
		if tok, err = adminauth.NewToken(); err != nil {
			return "", false, err
		}
		a.genPath = genPath
	}
	a.token = tok
	return tok, false, nil
}

// publish writes a generated token to its file and logs the file's path
// (never the token). It runs once the listener is up, so that a process
// that fails to start does not replace the token of one that runs.
func (a *adminFlags) publish(log *slog.Logger) error {
	if a.genPath == "" {
		return nil
	}
	if err := adminauth.WriteFile(a.genPath, a.token); err != nil {
		return err
	}
	log.Info("admin token generated; send it as 'Authorization: Bearer TOKEN'", "file", a.genPath)
	return nil
}

// clientAdminToken is the token a command that calls an admin API sends:
// from file, else HONGBAO_ADMIN_TOKEN, else none.
func clientAdminToken(file string) (string, error) {
	if file != "" {
		return adminauth.ReadFile(file, "admin token", nil)
	}
	return strings.TrimSpace(os.Getenv(adminauth.EnvToken)), nil
}

// tokenPathIn is where a generated admin token goes: in dir, or in the
// working directory when dir is empty.
func tokenPathIn(dir, name string) string {
	if dir == "" {
		dir = "."
	}
	return filepath.Join(dir, name)
}
