package harness

import (
	"hongbao/internal/money"
	"hongbao/internal/server"
)

// MergeAudits sums the audit reports of several nodes (money.MergeAudits).
func MergeAudits(names []string, reps []server.AuditReport) server.AuditReport {
	return money.MergeAudits(names, reps)
}
