package sample

import (
	"regexp"
	"strings"

	"hongbao/internal/proto"
)

// The vocabulary of the samples: the counter and gauge keys a server and a
// load client report. The monitor's CSV has one column per key, in this
// order, so that its header is the same for every run.

// ServerCommands name the request commands the server counts separately
// (its "requests_<name>" counters and the command label of
// hongbao_requests_total). A request of any other command counts as
// "other", the last.
var ServerCommands = []string{"login", "shake", "classic_open", "token_login", "ping", "pong", "send", "open", "list", "other"}

// Disconnect reasons beyond the protocol's: the client closed its end
// (EOF, reset), an I/O error, or the event loops stopped with the
// connection still open.
const (
	DisconnectHangup  = "hangup"
	DisconnectIOError = "io_error"
	DisconnectStopped = "stopped"
)

// DisconnectReasons name why the server closed connections (its
// "disconnects_<name>" counters and the reason label of
// hongbao_disconnects_total): the protocol reasons it sends in an error
// frame (proto.Reason.Name, in their order), then DisconnectHangup,
// DisconnectIOError and DisconnectStopped.
func DisconnectReasons() []string {
	out := make([]string, 0, proto.NumReasons+2)
	for r := proto.Reason(1); r < proto.NumReasons; r++ {
		out = append(out, r.Name())
	}
	return append(out, DisconnectHangup, DisconnectIOError, DisconnectStopped)
}

// ServerCounters are the counter keys of a server sample.
func ServerCounters() []string {
	out := []string{"requests", "shakes", "got", "none", "all_taken", "overloaded", "logins", "errors",
		"granted_cents", "accepted", "closed", "issued", "issued_cents",
		"group_sent", "group_sent_cents", "group_opens", "group_shares", "group_shares_cents",
		"group_refunds", "group_refunded_cents", "group_pushes"}
	for _, c := range ServerCommands {
		out = append(out, "requests_"+c)
	}
	for _, r := range DisconnectReasons() {
		out = append(out, "disconnects_"+r)
	}
	return out
}

// ServerGauges are the gauge keys of a server sample.
var ServerGauges = []string{"connections", "online", "waiting", "monitor_dropped_total"}

// ClientCounters are the counter keys of a load client's sample.
func ClientCounters() []string {
	out := []string{"sent", "answered", "got", "none", "all_taken", "overloaded", "amount_cents", "errors",
		"timeouts", "late", "skipped_offline", "disconnects", "reconnects", "logins", "dial_errors",
		"pushes", "opens", "opened_cents"}
	for r := proto.Reason(1); r < proto.NumReasons; r++ {
		out = append(out, ClosedByServerKey(r.String()))
	}
	return out
}

// ClientGauges are the gauge keys of a load client's sample.
var ClientGauges = []string{"connections", "in_flight", "qps", "monitor_dropped_total"}

var nonWord = regexp.MustCompile(`[^a-z0-9]+`)

// ClosedByServerKey is a load client's counter key for connections the
// server closed with the reason whose text (proto.Reason.String) is reason.
func ClosedByServerKey(reason string) string {
	return "closed_by_server_" + strings.Trim(nonWord.ReplaceAllString(strings.ToLower(reason), "_"), "_")
}
