package harness

import (
	"hongbao/internal/money"
	"hongbao/internal/server"
)

// MergeAudits sums the audit reports of several nodes (money.MergeAudits).
func MergeAudits(names []string, reps []server.AuditReport) server.AuditReport {
	return money.MergeAudits(names, reps)
}

// Audit reads the live audit of a server through its admin API.
func (a *Admin) Audit() (server.AuditReport, error) {
	var r server.AuditReport
	return r, a.Get("/api/audit", &r)
}
