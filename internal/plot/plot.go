// Package plot renders a series recorded by `hongbao monitor` (NDJSON of
// monitor.Second) into report.html: one self-contained page with the
// dashboard's charts (monitor.Charts, drawn by uPlot; its script and style
// inlined from the monitor's web directory, the series' columns inline as
// JSON; nothing loaded from outside), the run's phases (found in the
// series by the clients' rate, see RunPhases) shaded and named on every
// chart, a table of each phase second by second beside the seed's figure,
// and a table of every series.
package plot

import (
	"bytes"
	"errors"
	"fmt"
	"html/template"
	"math"
	"os"
	"path/filepath"
	"time"

	"hongbao/internal/monitor"
)

// Series is one named line of a chart.
type Series struct {
	Chart string // monitor.Chart ID
	Name  string
	Unit  string
	line  monitor.Series
}

// AllSeries lists every line of a recording, chart by chart.
func AllSeries(secs []monitor.Second) []Series {
	var out []Series
	for _, c := range monitor.Charts {
		for _, l := range c.Lines(secs) {
			out = append(out, Series{Chart: c.ID, Name: l.Label, Unit: l.Unit, line: l})
		}
	}
	return out
}

// Stat summarises a series over the recording.
type Stat struct {
	Chart, Name, Unit   string
	Points              int
	Min, Mean, Max, Sum float64
}

// Output is what Render wrote.
type Output struct {
	Report string
	Stats  []Stat
	Phases []Phase
}

// chartData is a chart as the report's script draws it: the definition and
// the value of each line in each second (null where it has none).
type chartData struct {
	monitor.Chart
	Lines  []string     `json:"lines"`
	Values [][]*float64 `json:"values"`
}

// Render reads the series in file and writes report.html to dir.
func Render(file, dir string) (*Output, error) {
	secs, err := monitor.ReadFile(file)
	if err != nil {
		return nil, err
	}
	if len(secs) == 0 {
		return nil, fmt.Errorf("plot: %s holds no seconds", file)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	ts := make([]int64, len(secs))
	for i, s := range secs {
		ts[i] = s.T
	}
	labels, phases := RunPhases(secs)
	var charts []chartData
	for _, c := range monitor.Charts {
		cd := chartData{Chart: c}
		for _, l := range c.Lines(secs) {
			col := make([]*float64, len(secs))
			for i, s := range secs {
				if v, ok := l.Value(s); ok && !math.IsNaN(v) && !math.IsInf(v, 0) {
					col[i] = &v
				}
			}
			cd.Lines = append(cd.Lines, l.Label)
			cd.Values = append(cd.Values, col)
		}
		charts = append(charts, cd)
	}
	out := &Output{Stats: stats(secs, AllSeries(secs)), Phases: phases}
	var missing []monitor.Second
	for _, s := range secs {
		if len(s.Missing) > 0 {
			missing = append(missing, s)
		}
	}
	assets := map[string]string{}
	for _, name := range []string{"uPlot.iife.min.js", "uPlot.min.css", "style.css", "charts.js"} {
		b, err := monitor.Asset(name)
		if err != nil {
			return nil, err
		}
		// Inlined in a <script> or <style> element, which such text would end.
		if l := bytes.ToLower(b); bytes.Contains(l, []byte("</script")) || bytes.Contains(l, []byte("</style")) {
			return nil, errors.New("plot: " + name + " cannot be inlined")
		}
		assets[name] = string(b)
	}
	var html bytes.Buffer
	err = reportTmpl.Execute(&html, map[string]any{
		"File": file, "Start": time.Unix(secs[0].T, 0).UTC().Format(time.RFC3339),
		"End": time.Unix(secs[len(secs)-1].T, 0).UTC().Format(time.RFC3339), "Seconds": len(secs),
		"Stats": out.Stats, "Missing": missing, "T0": secs[0].T, "Phases": phaseTables(secs, phases),
		"Data":  map[string]any{"t": ts, "phase": labels, "charts": charts},
		"UPlot": template.JS(assets["uPlot.iife.min.js"]), "Charts": template.JS(assets["charts.js"]),
		"Style": template.CSS(assets["uPlot.min.css"] + "\n" + assets["style.css"]),
	})
	if err != nil {
		return nil, err
	}
	out.Report = filepath.Join(dir, "report.html")
	return out, os.WriteFile(out.Report, html.Bytes(), 0o644)
}

func stats(secs []monitor.Second, series []Series) []Stat {
	var out []Stat
	for _, s := range series {
		st := Stat{Chart: s.Chart, Name: s.Name, Unit: s.Unit, Min: math.Inf(1), Max: math.Inf(-1)}
		for _, sec := range secs {
			if v, ok := s.line.Value(sec); ok {
				st.Points++
				st.Sum += v
				st.Min, st.Max = min(st.Min, v), max(st.Max, v)
			}
		}
		if st.Points == 0 {
			st.Min, st.Max = 0, 0
		} else {
			st.Mean = st.Sum / float64(st.Points)
		}
		out = append(out, st)
	}
	return out
}

var reportTmpl = template.Must(template.New("report").Funcs(template.FuncMap{
	"f": func(x float64) string {
		if x == math.Trunc(x) && math.Abs(x) < 1e15 {
			return fmt.Sprintf("%.0f", x)
		}
		return fmt.Sprintf("%.3g", x)
	},
	"sub": func(a, b int64) int64 { return a - b },
	// ms is a latency in ms, "-" for none.
	"ms": func(x float64) string {
		if x < 0 {
			return "-"
		}
		return fmt.Sprintf("%.1f", x)
	},
	"pct":  func(x float64) string { return fmt.Sprintf("%.0f%%", 100*x) },
	"rate": func(r int) string { return thousands(r) + "/s" },
}).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>hongbao run report</title>
<style>
{{.Style}}
</style></head><body>
<h1>hongbao run report</h1>
<p>Series <code>{{.File}}</code>: {{.Seconds}} seconds, {{.Start}} to {{.End}}. The run's phases are shaded and named on every chart ({{range $i, $p := .Phases}}{{if $i}}, {{end}}{{$p.Name}}{{end}}); the legend of each chart is below it. Hover a chart for the figures of a second; drag to zoom, double-click to zoom out.</p>
<section id="charts" class="charts"></section>
<h2>Phases beside the seed</h2>
<p>A phase starts when the clients' rate changes (phase 1: no shakes yet). Sent and timeouts as the clients counted them, answered as the server did; latency over every answer of the phase (its seconds merged); within 1%: seconds whose sent rate was within 1% of the phase's rate.</p>
<table id="phases"><thead><tr><th>phase</th><th>seconds</th><th>rate set</th><th>sent/s</th><th>answered/s</th><th>seconds within 1%</th><th>p50 ms</th><th>p99 ms</th><th>timeouts</th><th>the seed</th></tr></thead><tbody>
{{range .Phases}}<tr><td>{{.Name}}</td><td>{{.Seconds}}</td><td>{{if .Rate}}{{rate .Rate}}{{else}}-{{end}}</td><td>{{printf "%.0f" .MeanSent}}</td><td>{{printf "%.0f" .MeanAnswered}}</td><td>{{if .Rate}}{{pct .Within}}{{else}}-{{end}}</td><td>{{ms .P50}}</td><td>{{ms .P99}}</td><td>{{printf "%.0f" .Timeouts}}</td><td>{{or .Seed "-"}}</td></tr>
{{end}}</tbody></table>
{{range .Phases}}<details class="phase"{{if .Rate}} open{{end}}><summary>{{.Name}}, second by second ({{.Seconds}} s){{if .Seed}}; the seed: {{.Seed}}{{end}}</summary>
<table class="phase-seconds"><thead><tr><th>t+ s</th><th>second</th><th>sent/s</th><th>answered/s</th><th>within 1%</th><th>p50 ms</th><th>p99 ms</th><th>timeouts</th><th>online</th></tr></thead><tbody>
{{$rate := .Rate}}{{range .Rows}}<tr><td>{{.T}}</td><td>{{.N}}</td><td>{{printf "%.0f" .Sent}}</td><td>{{printf "%.0f" .Answered}}</td><td>{{if $rate}}{{if .Within}}yes{{else}}no{{end}}{{else}}-{{end}}</td><td>{{ms .P50}}</td><td>{{ms .P99}}</td><td>{{printf "%.0f" .Timeouts}}</td><td>{{printf "%.0f" .Online}}</td></tr>
{{end}}</tbody></table></details>
{{end}}
<h2>Series</h2>
<table id="series"><thead><tr><th>series</th><th>chart</th><th>unit</th><th>seconds</th><th>min</th><th>mean</th><th>max</th><th>sum</th></tr></thead><tbody>
{{range .Stats}}<tr><td>{{.Name}}</td><td>{{.Chart}}</td><td>{{.Unit}}</td><td>{{.Points}}</td><td>{{f .Min}}</td><td>{{f .Mean}}</td><td>{{f .Max}}</td><td>{{f .Sum}}</td></tr>
{{end}}</tbody></table>
<h2>Seconds with missing processes</h2>
{{if .Missing}}<ul>{{range .Missing}}<li>t+{{sub .T $.T0}}: {{range .Missing}}{{.}} {{end}}</li>{{end}}</ul>{{else}}<p>none</p>{{end}}
<footer>Charts: uPlot (MIT), embedded.</footer>
<script>{{.UPlot}}</script>
<script>{{.Charts}}</script>
<script>
"use strict";
const report = {{.Data}};
const container = document.getElementById("charts");
const plots = report.charts.map(c => {
  // Every chart of a report shows the run's phases.
  const ch = newChart(container, Object.assign({}, c, { phases: true }), c.lines, i => report.phase[i]);
  ch.plot.setData([report.t].concat(c.values));
  ch.el.dataset.points = report.t.length;
  return ch.plot;
});
fitCharts(container, () => plots);
</script>
</body></html>
`))
