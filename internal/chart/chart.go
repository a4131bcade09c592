// Package chart renders the benchmark and soak charts as PNG files with
// gonum.org/v1/plot: line panels (a series over time) and grouped bar panels (one
// bar per target in each group).
package chart

import (
	"fmt"
	"image/color"
	"math"
	"os"
	"strconv"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// Series is one named line: Y over X.
type Series struct {
	Name string
	X, Y []float64
}

// LinePanel is one plot of lines sharing axes.
type LinePanel struct {
	Title, XLabel, YLabel string
	Series                []Series
}

// BarSeries is one target's values, one per group of a BarPanel. Color indexes
// the palette, so one target keeps its color across panels.
type BarSeries struct {
	Name   string
	Values []float64
	Color  int
}

// BarPanel is one plot of grouped bars: for each group, one bar per series.
type BarPanel struct {
	Title, YLabel string
	Groups        []string
	Series        []BarSeries
}

// Lines writes the panels to path as one PNG, cols panels per row.
func Lines(path string, cols int, panels []LinePanel) error {
	plots := make([]*plot.Plot, 0, len(panels))
	for _, pn := range panels {
		p := newPlot(pn.Title, pn.XLabel, pn.YLabel)
		p.Y.Min = 0
		for i, s := range pn.Series {
			if len(s.X) != len(s.Y) {
				return fmt.Errorf("chart %s: series %q has %d x and %d y values", pn.Title, s.Name, len(s.X), len(s.Y))
			}
			xys := make(plotter.XYs, len(s.X))
			for j := range s.X {
				xys[j].X, xys[j].Y = s.X[j], s.Y[j]
			}
			line, points, err := plotter.NewLinePoints(xys)
			if err != nil {
				return fmt.Errorf("chart %s: %w", pn.Title, err)
			}
			line.Color, points.Color = plotutil.Color(i), plotutil.Color(i)
			line.Width = vg.Points(1.5)
			points.Radius = vg.Points(1.5)
			p.Add(line, points)
			if len(pn.Series) > 1 {
				p.Legend.Add(s.Name, line)
			}
		}
		plots = append(plots, p)
	}
	return save(path, cols, plots)
}

// Bars writes the panels to path as one PNG, cols panels per row.
func Bars(path string, cols int, panels []BarPanel) error {
	plots := make([]*plot.Plot, 0, len(panels))
	for _, pn := range panels {
		p := newPlot(pn.Title, "", pn.YLabel)
		n := len(pn.Series)
		width := vg.Points(150 / float64(max(n, 1)))
		top := 0.0
		for i, s := range pn.Series {
			if len(s.Values) != len(pn.Groups) {
				return fmt.Errorf("chart %s: series %q has %d values for %d groups", pn.Title, s.Name, len(s.Values), len(pn.Groups))
			}
			bars, err := plotter.NewBarChart(plotter.Values(s.Values), width)
			if err != nil {
				return fmt.Errorf("chart %s: %w", pn.Title, err)
			}
			bars.Color = plotutil.Color(s.Color)
			for _, v := range s.Values {
				top = max(top, v)
			}
			bars.LineStyle.Width = 0
			bars.Offset = width * vg.Length(float64(i)-float64(n-1)/2)
			p.Add(bars)
			p.Legend.Add(s.Name, bars)
		}
		p.Legend.Top = true
		p.Y.Min, p.Y.Max = 0, top*1.45 // room above the bars for the legend
		p.NominalX(pn.Groups...)
		plots = append(plots, p)
	}
	return save(path, cols, plots)
}

// wholeTicks labels gonum's default ticks as whole numbers with thousands
// separators (1,500,000 rather than 1.5e+06 or 500.00).
type wholeTicks struct{}

func (wholeTicks) Ticks(lo, hi float64) []plot.Tick {
	ticks := plot.DefaultTicks{}.Ticks(lo, hi)
	for i := range ticks {
		if ticks[i].Label != "" {
			ticks[i].Label = thousands(ticks[i].Value)
		}
	}
	return ticks
}

// thousands formats v rounded to a whole number, digits grouped by three (keeping
// one decimal below 10, where whole numbers would repeat).
func thousands(v float64) string {
	if v != 0 && v < 10 && v > -10 {
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
	s := strconv.FormatInt(int64(math.Round(v)), 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	if neg {
		s = "-" + s
	}
	return s
}

func newPlot(title, xLabel, yLabel string) *plot.Plot {
	p := plot.New()
	p.Y.Tick.Marker = wholeTicks{}
	p.Title.Text = title
	p.X.Label.Text = xLabel
	p.Y.Label.Text = yLabel
	p.BackgroundColor = color.White
	p.Add(plotter.NewGrid())
	return p
}

// save lays the plots out in rows of cols and writes them as one PNG.
func save(path string, cols int, plots []*plot.Plot) error {
	if len(plots) == 0 {
		return fmt.Errorf("chart %s: nothing to draw", path)
	}
	cols = min(max(cols, 1), len(plots))
	rows := (len(plots) + cols - 1) / cols
	img := vgimg.New(vg.Points(float64(420*cols)), vg.Points(float64(300*rows)))
	dc := draw.New(img)
	grid := make([][]*plot.Plot, rows)
	for r := range grid {
		grid[r] = make([]*plot.Plot, cols)
		for c := range cols {
			if i := r*cols + c; i < len(plots) {
				grid[r][c] = plots[i]
			}
		}
	}
	canvases := plot.Align(grid, draw.Tiles{Rows: rows, Cols: cols, PadX: vg.Points(8), PadY: vg.Points(8),
		PadTop: vg.Points(4), PadBottom: vg.Points(4), PadLeft: vg.Points(4), PadRight: vg.Points(4)}, dc)
	for r := range grid {
		for c, p := range grid[r] {
			if p != nil {
				p.Draw(canvases[r][c])
			}
		}
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("chart: %w", err)
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		_ = f.Close()
		return fmt.Errorf("chart %s: %w", path, err)
	}
	return f.Close()
}
