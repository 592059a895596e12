package harness

import (
	"fmt"
	"maps"

	"hongbao/internal/server"
)

// MergeAudits sums the audit reports of several nodes (each node has its
// own ledger; the whole deployment is clean when every node is). A
// violation is prefixed with the name of the node it was found on.
func MergeAudits(names []string, reps []server.AuditReport) server.AuditReport {
	out := server.AuditReport{ByKind: map[string]uint64{}, Violations: []string{}, OK: true}
	for i, r := range reps {
		out.Records += r.Records
		for k, v := range r.ByKind {
			out.ByKind[k] += v
		}
		out.Packets += r.Packets
		out.Campaigns += r.Campaigns
		out.Users += r.Users
		out.Granted += r.Granted
		for _, v := range r.Violations {
			out.Violations = append(out.Violations, fmt.Sprintf("%s: %s", names[i], v))
		}
		out.OK = out.OK && r.OK
	}
	if len(reps) == 1 {
		out.ByKind = maps.Clone(reps[0].ByKind)
	}
	return out
}
