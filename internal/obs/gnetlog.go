package obs

import (
	"context"
	"fmt"
	"log/slog"
)

// GnetLogger routes gnet's logs (gnet.WithLogger) to L, tagged lib=gnet.
// gnet's Info is our Debug: it reports the engine's start and stop, which
// the processes log themselves. A message is only formatted when its level
// is enabled.
type GnetLogger struct{ L *slog.Logger }

func (g GnetLogger) logf(level slog.Level, format string, args []any) {
	if g.L.Enabled(context.Background(), level) {
		g.L.Log(context.Background(), level, fmt.Sprintf(format, args...), "lib", "gnet")
	}
}

func (g GnetLogger) Debugf(format string, args ...any) { g.logf(slog.LevelDebug, format, args) }
func (g GnetLogger) Infof(format string, args ...any)  { g.logf(slog.LevelDebug, format, args) }
func (g GnetLogger) Warnf(format string, args ...any)  { g.logf(slog.LevelWarn, format, args) }
func (g GnetLogger) Errorf(format string, args ...any) { g.logf(slog.LevelError, format, args) }
func (g GnetLogger) Fatalf(format string, args ...any) { g.logf(slog.LevelError, format, args) }
