package main

import (
	"context"
	"flag"
	"fmt"
	"strings"

	"hongbao/internal/plot"
)

func runPlot(_ context.Context, args []string) error {
	var out string
	c := newCommand("plot", "Render a series recorded by 'hongbao monitor' (FILE, NDJSON) into report.html: one self-contained page with the dashboard's charts (uPlot, inline, data included) and a table of every series. Usage: hongbao plot FILE [--out DIR].",
		"hongbao plot hongbao-series.ndjson --out plots")
	c.group("Output", func(fs *flag.FlagSet) {
		fs.StringVar(&out, "out", "plots", "directory for report.html")
	})
	// FILE may come before or after the flags.
	var file string
	if n := len(args); n > 0 && !strings.HasPrefix(args[0], "-") {
		file, args = args[0], args[1:]
	} else if n > 0 && !strings.HasPrefix(args[n-1], "-") && (n == 1 || !strings.Contains(args[n-2], "out")) {
		file, args = args[n-1], args[:n-1]
	}
	if err := c.parse(args); err != nil {
		return err
	}
	if file == "" {
		return c.usageErr("FILE is required: hongbao plot FILE [--out DIR]")
	}
	res, err := plot.Render(file, out)
	if err != nil {
		return err
	}
	fmt.Println(res.Report)
	return nil
}
