package sample

import (
	"regexp"
	"strings"

	"hongbao/internal/proto"
)

// The vocabulary the samples share: the label values of the server's
// counters by command and by disconnect reason, the load client's keys of
// closes by the server, and its phases. The keys themselves are the tables
// server.Metrics and load.Metrics (package metric).

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

// The phases of a load client's run, in their order (Sample.Phase).
const (
	PhaseIdle  = "idle"
	PhaseRamp  = "ramp"
	PhaseLoad  = "load"
	PhaseDrain = "drain"
	PhaseDone  = "done"
)

// Phases are the phases in their order: load clients that differ in a
// second are in the furthest along.
var Phases = []string{PhaseIdle, PhaseRamp, PhaseLoad, PhaseDrain, PhaseDone}

var nonWord = regexp.MustCompile(`[^a-z0-9]+`)

// ClosedByServerKey is a load client's counter key for connections the
// server closed with the reason whose text (proto.Reason.String) is reason.
func ClosedByServerKey(reason string) string {
	return "closed_by_server_" + strings.Trim(nonWord.ReplaceAllString(strings.ToLower(reason), "_"), "_")
}
