package demo

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"hongbao/internal/monitor"
	"hongbao/internal/plot"
)

// demoMonitor is the demo's in-process monitor: the server and the load
// client push their samples to it; at the end its series is plotted.
type demoMonitor struct {
	*monitor.Running
	file    string
	stopped bool
}

func startMonitor(o Options) (*demoMonitor, error) {
	addr := o.Monitor
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	file := filepath.Join(o.Dir, "series.ndjson")
	m, err := monitor.Listen(addr, monitor.Options{File: file, Grace: time.Second})
	if err != nil {
		return nil, err
	}
	return &demoMonitor{Running: m, file: file}, nil
}

// Stop stops the monitor once.
func (m *demoMonitor) Stop() {
	if !m.stopped {
		m.stopped = true
		_ = m.Running.Stop()
	}
}

// finish keeps the dashboard up for o.Linger, closes the series and writes
// the report (charts and table) into o.Dir/plots.
func (m *demoMonitor) finish(ctx context.Context, o Options) {
	if o.Linger > 0 {
		fmt.Fprintf(o.Out, "\ndashboard stays up at %s for %v\n", m.URL(), o.Linger)
		select {
		case <-time.After(o.Linger):
		case <-ctx.Done():
		}
	}
	m.Stop()
	out, err := plot.Render(m.file, filepath.Join(o.Dir, "plots"))
	if err != nil {
		fmt.Fprintf(o.Out, "\nplots: %v\n", err)
		return
	}
	fmt.Fprintf(o.Out, "\nseries: %s\nreport: %s\n", m.file, out.Report)
}
