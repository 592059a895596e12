// Package plot renders a series recorded by `hongbao monitor` (NDJSON of
// monitor.Second) into PNG charts (gonum.org/v1/plot, pure Go) and one
// self-contained HTML report that embeds them as data: URIs with a table of
// every series.
package plot

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"html/template"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"sort"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"

	"hongbao/internal/monitor"
)

// Series is one named line of a chart.
type Series struct {
	Chart string // chart file stem
	Name  string
	Unit  string
	value func(s monitor.Second) (float64, bool)
}

// Chart is one PNG.
type Chart struct {
	Stem, Title, YLabel string
}

// Charts are the figures, in the report's order (the seed's: rate with the
// phases, packets, connections, latency; then amounts, CPU, memory, network).
var Charts = []Chart{
	{"rate", "Shakes per second (phases shaded)", "per second"},
	{"packets", "Packets issued and received per second (shake and group)", "packets/s"},
	{"amounts", "Amounts issued and received per second (shake and group)", "cents/s"},
	{"connections", "Connections", "connections"},
	{"latency", "Client latency (merged over clients)", "ms"},
	{"cpu", "CPU per process", "cores"},
	{"memory", "Resident memory per process", "MB"},
	{"network", "Machine network traffic (/proc/net/dev)", "per second"},
}

func srv(k string) func(monitor.Second) (float64, bool) {
	return func(s monitor.Second) (float64, bool) { v, ok := s.Server[k]; return v, ok }
}

func cli(k string) func(monitor.Second) (float64, bool) {
	return func(s monitor.Second) (float64, bool) { v, ok := s.Client[k]; return v, ok }
}

func lat(f func(l float64, p99, p999 float64) float64) func(monitor.Second) (float64, bool) {
	return func(s monitor.Second) (float64, bool) {
		if s.Latency == nil {
			return 0, false
		}
		return f(s.Latency.P50, s.Latency.P99, s.Latency.P999) / 1000, true
	}
}

// fixedSeries are the series every recording has.
func fixedSeries() []Series {
	return []Series{
		{"rate", "client shakes sent", "/s", cli("sent")},
		{"rate", "server shakes answered", "/s", srv("shakes")},
		{"rate", "server got", "/s", srv("got")},
		{"rate", "server none", "/s", srv("none")},
		{"rate", "server overloaded", "/s", srv("overloaded")},
		{"rate", "client timeouts", "/s", cli("timeouts")},
		{"packets", "packets issued (server)", "/s", srv("issued")},
		{"packets", "packets granted (server)", "/s", srv("got")},
		{"packets", "packets received (clients)", "/s", cli("got")},
		{"amounts", "cents issued (server)", "¢/s", srv("issued_cents")},
		{"amounts", "cents granted (server)", "¢/s", srv("granted_cents")},
		{"amounts", "cents received (clients)", "¢/s", cli("amount_cents")},
		{"packets", "group packets sent (server)", "/s", srv("group_sent")},
		{"packets", "group shares granted (server)", "/s", srv("group_shares")},
		{"packets", "group refunds (server)", "/s", srv("group_refunds")},
		{"packets", "group pushes sent (server)", "/s", srv("group_pushes")},
		{"packets", "group pushes received (clients)", "/s", cli("pushes")},
		{"packets", "group opens (clients)", "/s", cli("opens")},
		{"amounts", "group cents sent (server)", "¢/s", srv("group_sent_cents")},
		{"amounts", "group cents granted (server)", "¢/s", srv("group_shares_cents")},
		{"amounts", "group cents refunded (server)", "¢/s", srv("group_refunded_cents")},
		{"amounts", "group cents opened (clients)", "¢/s", cli("opened_cents")},
		{"connections", "server connections", "", srv("connections")},
		{"connections", "client connections", "", cli("connections")},
		{"latency", "latency p50", "ms", lat(func(p50, _, _ float64) float64 { return p50 })},
		{"latency", "latency p99", "ms", lat(func(_, p99, _ float64) float64 { return p99 })},
		{"latency", "latency p99.9", "ms", lat(func(_, _, p999 float64) float64 { return p999 })},
		{"network", "rx MB/s", "MB/s", func(s monitor.Second) (float64, bool) { return float64(s.Net.RxBytes) / 1e6, true }},
		{"network", "tx MB/s", "MB/s", func(s monitor.Second) (float64, bool) { return float64(s.Net.TxBytes) / 1e6, true }},
		{"network", "rx kpackets/s", "k/s", func(s monitor.Second) (float64, bool) { return float64(s.Net.RxPackets) / 1e3, true }},
		{"network", "tx kpackets/s", "k/s", func(s monitor.Second) (float64, bool) { return float64(s.Net.TxPackets) / 1e3, true }},
	}
}

// procSeries are the per-process series of the recording.
func procSeries(secs []monitor.Second) []Series {
	names := map[string]bool{}
	for _, s := range secs {
		for _, p := range s.Procs {
			names[p.Name] = true
		}
	}
	sorted := make([]string, 0, len(names))
	for n := range names {
		sorted = append(sorted, n)
	}
	sort.Strings(sorted)
	var out []Series
	for _, n := range sorted {
		find := func(s monitor.Second) *monitor.ProcSecond {
			for i := range s.Procs {
				if s.Procs[i].Name == n {
					return &s.Procs[i]
				}
			}
			return nil
		}
		out = append(out,
			Series{"cpu", n + " CPU", "cores", func(s monitor.Second) (float64, bool) {
				if p := find(s); p != nil {
					return p.CPU, true
				}
				return 0, false
			}},
			Series{"memory", n + " RSS", "MB", func(s monitor.Second) (float64, bool) {
				if p := find(s); p != nil {
					return float64(p.RSS) / (1 << 20), true
				}
				return 0, false
			}})
	}
	return out
}

// AllSeries lists every series of a recording.
func AllSeries(secs []monitor.Second) []Series {
	return append(fixedSeries(), procSeries(secs)...)
}

// Stat summarises a series over the recording.
type Stat struct {
	Chart, Name, Unit   string
	Points              int
	Min, Mean, Max, Sum float64
}

// Output is what Render wrote.
type Output struct {
	PNGs   []string
	Report string
	Stats  []Stat
}

var phaseColors = map[string]color.RGBA{
	"ramp":  {R: 255, G: 235, B: 180, A: 255},
	"load":  {R: 210, G: 240, B: 210, A: 255},
	"drain": {R: 220, G: 225, B: 245, A: 255},
}

// Render reads the series in file and writes the PNGs and report.html to dir.
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
	t0 := secs[0].T
	series := AllSeries(secs)
	out := &Output{}
	type img struct {
		Title, File string
		Data        template.URL
	}
	var imgs []img
	for ci, ch := range Charts {
		p := plot.New()
		p.Title.Text = ch.Title
		p.X.Label.Text = fmt.Sprintf("seconds since %s", time.Unix(t0, 0).UTC().Format("2006-01-02 15:04:05 UTC"))
		p.Y.Label.Text = ch.YLabel
		p.Legend.Top = true
		p.Y.Min = 0
		p.Add(plotter.NewGrid())
		ymax := 0.0
		var lines []plot.Plotter
		i := 0
		for _, s := range series {
			if s.Chart != ch.Stem {
				continue
			}
			var xys plotter.XYs
			for _, sec := range secs {
				if v, ok := s.value(sec); ok && !math.IsNaN(v) {
					xys = append(xys, plotter.XY{X: float64(sec.T - t0), Y: v})
					ymax = max(ymax, v)
				}
			}
			if len(xys) == 0 {
				continue
			}
			l, err := plotter.NewLine(xys)
			if err != nil {
				return nil, err
			}
			l.Color = plotColor(i)
			l.Width = vg.Points(1.2)
			lines = append(lines, l)
			p.Legend.Add(s.Name, l)
			i++
		}
		if ci == 0 {
			for _, b := range phaseBands(secs, t0, ymax*1.05) {
				p.Add(b)
			}
		}
		p.Add(lines...)
		if ymax == 0 {
			p.Y.Max = 1
		}
		path := filepath.Join(dir, ch.Stem+".png")
		w, err := p.WriterTo(11*vg.Inch, 4.5*vg.Inch, "png")
		if err != nil {
			return nil, err
		}
		var buf bytes.Buffer
		if _, err := w.WriteTo(&buf); err != nil {
			return nil, err
		}
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			return nil, err
		}
		out.PNGs = append(out.PNGs, path)
		imgs = append(imgs, img{ch.Title, filepath.Base(path), template.URL("data:image/png;base64," + base64.StdEncoding.EncodeToString(buf.Bytes()))})
	}
	out.Stats = stats(secs, series)
	var missing []monitor.Second
	for _, s := range secs {
		if len(s.Missing) > 0 {
			missing = append(missing, s)
		}
	}
	var html bytes.Buffer
	err = reportTmpl.Execute(&html, map[string]any{
		"File": file, "Start": time.Unix(t0, 0).UTC().Format(time.RFC3339),
		"End": time.Unix(secs[len(secs)-1].T, 0).UTC().Format(time.RFC3339), "Seconds": len(secs),
		"Images": imgs, "Stats": out.Stats, "Missing": missing, "T0": t0,
	})
	if err != nil {
		return nil, err
	}
	out.Report = filepath.Join(dir, "report.html")
	return out, os.WriteFile(out.Report, html.Bytes(), 0o644)
}

// phaseBands shades the seconds of each load phase.
func phaseBands(secs []monitor.Second, t0 int64, top float64) []plot.Plotter {
	if top <= 0 {
		top = 1
	}
	var out []plot.Plotter
	start := 0
	for i := 1; i <= len(secs); i++ {
		if i < len(secs) && secs[i].Phase == secs[start].Phase {
			continue
		}
		if c, ok := phaseColors[secs[start].Phase]; ok {
			x0, x1 := float64(secs[start].T-t0)-0.5, float64(secs[i-1].T-t0)+0.5
			poly, err := plotter.NewPolygon(plotter.XYs{{X: x0, Y: 0}, {X: x1, Y: 0}, {X: x1, Y: top}, {X: x0, Y: top}})
			if err == nil {
				poly.Color = c
				poly.LineStyle.Width = 0
				out = append(out, poly)
			}
		}
		start = i
	}
	return out
}

func plotColor(i int) color.Color {
	pal := []color.RGBA{{192, 57, 43, 255}, {41, 128, 185, 255}, {39, 174, 96, 255}, {142, 68, 173, 255},
		{211, 84, 0, 255}, {22, 160, 133, 255}, {127, 140, 141, 255}, {44, 62, 80, 255},
		{241, 196, 15, 255}, {232, 67, 147, 255}, {0, 0, 0, 255}, {120, 80, 40, 255}}
	return pal[i%len(pal)]
}

func stats(secs []monitor.Second, series []Series) []Stat {
	var out []Stat
	for _, s := range series {
		st := Stat{Chart: s.Chart, Name: s.Name, Unit: s.Unit, Min: math.Inf(1), Max: math.Inf(-1)}
		for _, sec := range secs {
			if v, ok := s.value(sec); ok {
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
}).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>hongbao run report</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 16px; color: #222; }
table { border-collapse: collapse; } td, th { border: 1px solid #ccc; padding: 2px 8px; text-align: right; }
td:first-child, th:first-child, td:nth-child(2) { text-align: left; }
img { max-width: 100%; border: 1px solid #ddd; margin: 8px 0; }
</style></head><body>
<h1>hongbao run report</h1>
<p>Series <code>{{.File}}</code>: {{.Seconds}} seconds, {{.Start}} to {{.End}}. Phases on the rate chart: ramp (yellow), load (green), drain (blue).</p>
{{range .Images}}<h2>{{.Title}}</h2>
<img alt="{{.Title}}" data-file="{{.File}}" src="{{.Data}}">
{{end}}
<h2>Series</h2>
<table id="series"><thead><tr><th>series</th><th>chart</th><th>unit</th><th>seconds</th><th>min</th><th>mean</th><th>max</th><th>sum</th></tr></thead><tbody>
{{range .Stats}}<tr><td>{{.Name}}</td><td>{{.Chart}}</td><td>{{.Unit}}</td><td>{{.Points}}</td><td>{{f .Min}}</td><td>{{f .Mean}}</td><td>{{f .Max}}</td><td>{{f .Sum}}</td></tr>
{{end}}</tbody></table>
<h2>Seconds with missing processes</h2>
{{if .Missing}}<ul>{{range .Missing}}<li>t+{{sub .T $.T0}}: {{range .Missing}}{{.}} {{end}}</li>{{end}}</ul>{{else}}<p>none</p>{{end}}
</body></html>
`))
