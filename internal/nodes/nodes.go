// Package nodes maps users to nodes (SETs): M `hongbao server` processes
// that each own a contiguous slice of the N users. Every process (server,
// load client, runner, audit) computes the same map from (N, M) alone.
//
// Contiguous ranges rather than a hash: node k owns users
// [floor(k*N/M)+1, floor((k+1)*N/M)], so a load-client process that covers
// one node's range talks to exactly one server address (client sockets =
// users, one destination per process, which keeps the ephemeral-port
// budget simple), a server can refuse foreign users with two comparisons,
// and a generator's [from, to] range of one node is just that node's range.
// Sizes differ by at most one user.
package nodes

import (
	"errors"
	"fmt"
)

// ErrMap reports an impossible map (no users, no nodes, more nodes than users).
var ErrMap = errors.New("nodes: bad map")

// Map is the user-to-node map of N users over M nodes.
type Map struct {
	Users uint32 // N
	Nodes int    // M
}

// New returns the map of users over nodes.
func New(users uint32, nodes int) (Map, error) {
	if users < 1 || nodes < 1 || uint64(nodes) > uint64(users) {
		return Map{}, fmt.Errorf("%w: %d users over %d nodes", ErrMap, users, nodes)
	}
	return Map{Users: users, Nodes: nodes}, nil
}

// Of returns the node (0-based) that owns user u (1 <= u <= N).
func (m Map) Of(u uint32) int {
	return int((uint64(u)*uint64(m.Nodes) - 1) / uint64(m.Users))
}

// Range returns the first and last user of node k.
func (m Map) Range(k int) (from, to uint32) {
	return uint32(uint64(k)*uint64(m.Users)/uint64(m.Nodes)) + 1,
		uint32(uint64(k+1) * uint64(m.Users) / uint64(m.Nodes))
}

// Size is the number of users of node k.
func (m Map) Size(k int) int {
	f, t := m.Range(k)
	return int(t - f + 1)
}
