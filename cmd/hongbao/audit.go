package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"hongbao/internal/adminauth"
	"hongbao/internal/ledger"
	"hongbao/internal/money"
	"hongbao/internal/server"
)

// errAuditFailed makes the process exit 1 after the violations are printed.
var errAuditFailed = errors.New("audit found violations")

func runAudit(ctx context.Context, args []string) error {
	var (
		dir       string
		admin     string
		tokenFile string
		asJSON    bool
	)
	c := newCommand("audit", "Check a ledger: every packet's funded amount equals granted + refunded + remaining, nobody opened a packet twice, every share is at least a cent, every campaign's budget covers granted + not issued, every balance equals grants - sends + refunds. "+
		"Offline, damaged bytes followed by intact records are a violation too (the intact records after them are replayed, so what the damage lost shows as well); "+
		"a torn tail (the end of the file holding no intact record: what a crash during the last write leaves) and the spans an earlier 'hongbao ledger repair' dropped are notes. Exits 1 with the list of violations.",
		"hongbao audit --data-dir ./hongbao-data      (or: hongbao audit --admin 127.0.0.1:7001 --admin-token-file ./hongbao-data/admin.token)")
	c.group("Ledger", func(fs *flag.FlagSet) {
		fs.StringVar(&dir, "data-dir", "", "check the ledger in this directory offline (comma-separated: several nodes' ledgers, summed)")
		fs.StringVar(&admin, "admin", "", "check a running server's ledger through its admin API (host:port; comma-separated: several nodes, summed)")
		fs.StringVar(&tokenFile, "admin-token-file", "", "the admin token for --admin, read from this file (or give it in "+adminauth.EnvToken+")")
	})
	c.group("Output", func(fs *flag.FlagSet) {
		fs.BoolVar(&asJSON, "json", false, "print the report as JSON")
	})
	if err := c.parse(args); err != nil {
		return err
	}
	if (dir == "") == (admin == "") {
		return c.usageErr("give exactly one of --data-dir and --admin")
	}
	token, err := clientAdminToken(tokenFile)
	if err != nil {
		return c.usageErr("--admin-token-file: %v", err)
	}
	var (
		names []string
		reps  []server.AuditReport
		notes []string
	)
	for _, d := range splitList(dir) {
		rep, dn, err := auditDir(d)
		if err != nil {
			return err
		}
		names, reps = append(names, d), append(reps, rep)
		for _, n := range dn {
			notes = append(notes, d+": "+n)
		}
	}
	for _, a := range splitList(admin) {
		rep, err := auditAdmin(ctx, a, token)
		if err != nil {
			if errors.Is(err, errUsage) {
				return c.usageErr("--admin: %v", err)
			}
			return err
		}
		names, reps = append(names, a), append(reps, rep)
	}
	rep := money.MergeAudits(names, reps)
	if asJSON {
		if err := printJSON(auditOutput{rep, notes}); err != nil {
			return err
		}
	} else {
		fmt.Printf("records %d (%v), packets %d, campaigns %d, users %d, granted %d cents, topped up %d, withdrawn %d\n",
			rep.Records, rep.ByKind, rep.Packets, rep.Campaigns, rep.Users, rep.Granted, rep.TopUps, rep.Withdrawn)
		for _, v := range rep.Violations {
			fmt.Println("VIOLATION:", v)
		}
		for _, n := range notes {
			fmt.Println("note:", n)
		}
		if rep.OK {
			fmt.Println("ok: no violations")
		}
	}
	if !rep.OK {
		return fmt.Errorf("%w: %d", errAuditFailed, len(rep.Violations))
	}
	return nil
}

// splitList splits a comma-separated flag value, dropping empty items.
func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// auditOutput is the JSON of an audit: the report and its notes.
type auditOutput struct {
	server.AuditReport
	Notes []string `json:"notes,omitempty"`
}

// auditDir audits the ledger in dir, reading it in full: damage followed
// by intact records is a violation (never ok over it), and the records
// after it are replayed too, so that what the damage lost shows as the
// violations it causes. A torn tail is only a note: it is what a crash
// leaves, the server cuts it at start, and a damaged last record looks the
// same. So is each span an earlier repair dropped: the file is whole
// again, and the repair's consequences, if any, are violations.
func auditDir(dir string) (server.AuditReport, []string, error) {
	if _, err := os.Stat(filepath.Join(dir, ledger.FileName)); err != nil {
		return server.AuditReport{}, nil, fmt.Errorf("audit: no ledger in %s: %w", dir, err)
	}
	st, sc, err := ledger.Inspect(dir)
	if err != nil {
		return server.AuditReport{}, nil, fmt.Errorf("audit: %s: %w", dir, err)
	}
	rep := money.ReportOf(st)
	var damage, notes []string
	for _, d := range sc.Damage {
		if d.Tail {
			notes = append(notes, fmt.Sprintf("torn tail: the last %d bytes, from offset %d, hold no intact record (%s): "+
				"what a crash during the last write leaves; the server cuts it off at start (keeping it in a side file)", d.Length, d.Offset, d.Reason))
			continue
		}
		damage = append(damage, fmt.Sprintf("%s is damaged at offset %d: %d bytes hold no intact record (%s) and %d intact records follow (replayed here)",
			ledger.FileName, d.Offset, d.Length, d.Reason, d.After))
	}
	if len(damage) > 0 {
		rep.Violations = append(damage, rep.Violations...)
		notes = append(notes, fmt.Sprintf("the server refuses to start on this ledger; 'hongbao ledger repair --data-dir %s' keeps every intact record and moves the damaged bytes to a side file",
			shellArg(dir)))
	}
	for _, r := range sc.Repairs {
		notes = append(notes, fmt.Sprintf("a repair at %s dropped %d damaged bytes at offset %d of the file as it was (their hex is in its %s.dropped-* side file)",
			time.UnixMilli(r.Expiry).UTC().Format(time.RFC3339), r.Amount, r.Key, ledger.FileName))
	}
	rep.OK = len(rep.Violations) == 0
	return rep, notes, nil
}

func auditAdmin(ctx context.Context, admin, token string) (server.AuditReport, error) {
	var rep server.AuditReport
	req, err := http.NewRequestWithContext(ctx, "GET", "http://"+admin+"/api/audit", nil)
	if err != nil {
		return rep, fmt.Errorf("%w: %v", errUsage, err)
	}
	adminauth.SetHeader(req, token)
	resp, err := (&http.Client{Timeout: time.Minute}).Do(req)
	if err != nil {
		return rep, fmt.Errorf("audit: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e struct{ Error string }
		_ = json.NewDecoder(resp.Body).Decode(&e)
		if resp.StatusCode == http.StatusUnauthorized && token == "" {
			e.Error += " (give --admin-token-file or " + adminauth.EnvToken + ")"
		}
		return rep, fmt.Errorf("audit: %s answered %s: %s", admin, resp.Status, e.Error)
	}
	if err := json.NewDecoder(resp.Body).Decode(&rep); err != nil {
		return rep, fmt.Errorf("audit: reading the report of %s: %w", admin, err)
	}
	return rep, nil
}
