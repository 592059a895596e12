// Package servertest runs a real hongbao server in the test's process, on
// the loopback ports its options name, for the tests of the packages that
// talk to one (client, load, harness, monitor).
package servertest

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"hongbao/internal/server"
)

// Start builds and starts a server from o, with a silent logger when o has
// none; it shuts down when the test ends.
func Start(t testing.TB, o server.Options) *server.Server {
	t.Helper()
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s, err := server.New(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
	})
	return s
}
