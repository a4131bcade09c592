package chart

import (
	"image/png"
	"os"
	"path/filepath"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestChartsRender draws both kinds and checks each is a PNG of the laid-out size.
func TestChartsRender(t *testing.T) {
	dir := t.TempDir()
	lines := filepath.Join(dir, "lines.png")
	x := []float64{0, 10, 20, 30}
	err := Lines(lines, 2, []LinePanel{
		{Title: "RSS", XLabel: "seconds", YLabel: "MiB", Series: []Series{{Name: "rss", X: x, Y: []float64{20, 21, 21, 20}}}},
		{Title: "Counts", XLabel: "seconds", Series: []Series{{Name: "a", X: x, Y: []float64{1, 2, 3, 4}}, {Name: "b", X: x, Y: []float64{4, 3, 2, 1}}}},
		{Title: "Third", Series: []Series{{Name: "c", X: x, Y: []float64{1, 1, 1, 1}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	checkPNG(t, lines, 2*420, 2*300)
	bars := filepath.Join(dir, "bars.png")
	err = Bars(bars, 1, []BarPanel{{Title: "ops/s", YLabel: "ops/s", Groups: []string{"SET", "GET"},
		Series: []BarSeries{{Name: "direct", Values: []float64{100, 120}}, {Name: "gateway", Values: []float64{90, 110}}}}})
	if err != nil {
		t.Fatal(err)
	}
	checkPNG(t, bars, 420, 300)
	if err := Bars(bars, 1, []BarPanel{{Groups: []string{"SET"}, Series: []BarSeries{{Name: "x", Values: []float64{1, 2}}}}}); err == nil {
		t.Fatal("a series with more values than groups drew")
	}
	if err := Lines(lines, 1, nil); err == nil {
		t.Fatal("no panels drew")
	}
}

func checkPNG(t *testing.T, path string, w, h int) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	cfg, err := png.DecodeConfig(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	// vg points are 1/72 inch, drawn at 96 dpi.
	if wantW, wantH := w*96/72, h*96/72; cfg.Width != wantW || cfg.Height != wantH {
		t.Fatalf("%s: %dx%d, want %dx%d", path, cfg.Width, cfg.Height, wantW, wantH)
	}
}

func TestThousands(t *testing.T) {
	for v, want := range map[float64]string{0: "0", 2.5: "2.5", 500: "500", 1500: "1,500", 1234567: "1,234,567", -25000: "-25,000"} {
		if got := thousands(v); got != want {
			t.Errorf("thousands(%v) = %q, want %q", v, got, want)
		}
	}
}
