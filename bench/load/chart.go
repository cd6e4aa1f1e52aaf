package load

import (
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
)

// WriteChart draws the open-loop runs of r as a PNG: for every target, its
// p50 (thin line) and p99 (thick line) latency, on a logarithmic axis from
// 10µs to 1s, against the offered rate. Drawn with the standard library
// alone (a 3×5 pixel font for the labels), so that the binary needs no
// plotting package.
func (r *Report) WriteChart(w io.Writer) error {
	_, open := split(r.Results)
	series := map[string][]*Result{}
	var labels []string
	maxRate := 0.0
	for _, x := range open {
		if _, ok := series[x.Label]; !ok {
			labels = append(labels, x.Label)
		}
		series[x.Label] = append(series[x.Label], x)
		maxRate = max(maxRate, x.OfferedRate)
	}
	const W, H, left, right, top, bottom = 900, 540, 80, 20, 20, 70
	img := image.NewRGBA(image.Rect(0, 0, W, H))
	fill(img, img.Bounds(), color.RGBA{255, 255, 255, 255})
	grey, black := color.RGBA{210, 210, 210, 255}, color.RGBA{0, 0, 0, 255}
	pw, ph := W-left-right, H-top-bottom
	if maxRate <= 0 {
		maxRate = 1
	}
	maxRate = niceCeil(maxRate)
	const lo, hi = 1.0, 6.0 // log10 µs: 10µs .. 1s
	xOf := func(rate float64) int { return left + int(rate/maxRate*float64(pw)) }
	yOf := func(us float64) int {
		l := math.Log10(max(us, 1))
		l = min(max(l, lo), hi)
		return top + ph - int((l-lo)/(hi-lo)*float64(ph))
	}
	// Grid and axis labels.
	for d := lo; d <= hi; d++ {
		y := yOf(math.Pow(10, d))
		hline(img, left, left+pw, y, grey)
		text(img, 8, y-5, usLabel(math.Pow(10, d)), black, 2)
	}
	for i := 0; i <= 5; i++ {
		rate := maxRate * float64(i) / 5
		x := xOf(rate)
		vline(img, x, top, top+ph, grey)
		text(img, x-12, top+ph+8, rateLabel(rate), black, 2)
	}
	text(img, left+pw/2-90, H-28, "OFFERED REQ/S", black, 2)
	hline(img, left, left+pw, top+ph, black)
	vline(img, left, top, top+ph, black)

	palette := []color.RGBA{{31, 119, 180, 255}, {214, 39, 40, 255}, {44, 160, 44, 255}, {148, 103, 189, 255}, {255, 127, 14, 255}, {23, 190, 207, 255}}
	sort.Strings(labels)
	for i, label := range labels {
		c := palette[i%len(palette)]
		pts := series[label]
		sort.Slice(pts, func(a, b int) bool { return pts[a].OfferedRate < pts[b].OfferedRate })
		for j := 1; j < len(pts); j++ {
			a, b := pts[j-1], pts[j]
			line(img, xOf(a.OfferedRate), yOf(a.Latency.P50), xOf(b.OfferedRate), yOf(b.Latency.P50), c, 1)
			line(img, xOf(a.OfferedRate), yOf(a.Latency.P99), xOf(b.OfferedRate), yOf(b.Latency.P99), c, 3)
		}
		for _, p := range pts {
			fill(img, image.Rect(xOf(p.OfferedRate)-3, yOf(p.Latency.P99)-3, xOf(p.OfferedRate)+4, yOf(p.Latency.P99)+4), c)
		}
		// Legend, top left inside the plot.
		ly := top + 10 + 16*i
		fill(img, image.Rect(left+10, ly, left+30, ly+6), c)
		text(img, left+36, ly-2, strings.ToUpper(label), black, 2)
	}
	if err := png.Encode(w, img); err != nil {
		return fmt.Errorf("writing chart: %w", err)
	}
	return nil
}

func niceCeil(v float64) float64 {
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

func usLabel(us float64) string {
	switch {
	case us >= 1e6:
		return strconv.FormatFloat(us/1e6, 'f', -1, 64) + "S"
	case us >= 1e3:
		return strconv.FormatFloat(us/1e3, 'f', -1, 64) + "MS"
	}
	return strconv.FormatFloat(us, 'f', -1, 64) + "US"
}

func rateLabel(r float64) string {
	if r >= 1000 {
		return strconv.FormatFloat(r/1000, 'f', -1, 64) + "K"
	}
	return strconv.FormatFloat(r, 'f', -1, 64)
}

func fill(img *image.RGBA, r image.Rectangle, c color.RGBA) {
	r = r.Intersect(img.Bounds())
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			img.SetRGBA(x, y, c)
		}
	}
}

func hline(img *image.RGBA, x0, x1, y int, c color.RGBA) { fill(img, image.Rect(x0, y, x1+1, y+1), c) }
func vline(img *image.RGBA, x, y0, y1 int, c color.RGBA) { fill(img, image.Rect(x, y0, x+1, y1+1), c) }

// line draws a segment of the given width (Bresenham, square pen).
func line(img *image.RGBA, x0, y0, x1, y1 int, c color.RGBA, width int) {
	dx, dy := abs(x1-x0), -abs(y1-y0)
	sx, sy := sign(x1-x0), sign(y1-y0)
	e := dx + dy
	for {
		fill(img, image.Rect(x0-width/2, y0-width/2, x0-width/2+width, y0-width/2+width), c)
		if x0 == x1 && y0 == y1 {
			return
		}
		if e2 := 2 * e; e2 >= dy {
			e += dy
			x0 += sx
		} else {
			e += dx
			y0 += sy
		}
	}
}

func abs(v int) int { return max(v, -v) }
func sign(v int) int {
	switch {
	case v > 0:
		return 1
	case v < 0:
		return -1
	}
	return 0
}

// font is a 3×5 pixel font: each glyph's rows top to bottom, 3 bits each
// (4 = left column).
var font = map[rune][5]uint8{
	'0': {7, 5, 5, 5, 7}, '1': {2, 6, 2, 2, 7}, '2': {7, 1, 7, 4, 7}, '3': {7, 1, 3, 1, 7}, '4': {5, 5, 7, 1, 1},
	'5': {7, 4, 7, 1, 7}, '6': {7, 4, 7, 5, 7}, '7': {7, 1, 1, 2, 2}, '8': {7, 5, 7, 5, 7}, '9': {7, 5, 7, 1, 7},
	'.': {0, 0, 0, 0, 2}, '-': {0, 0, 7, 0, 0}, '/': {1, 1, 2, 4, 4}, ':': {0, 2, 0, 2, 0}, '(': {2, 4, 4, 4, 2},
	')': {2, 1, 1, 1, 2}, '_': {0, 0, 0, 0, 7},
	'A': {2, 5, 7, 5, 5}, 'B': {6, 5, 6, 5, 6}, 'C': {7, 4, 4, 4, 7}, 'D': {6, 5, 5, 5, 6}, 'E': {7, 4, 6, 4, 7},
	'F': {7, 4, 6, 4, 4}, 'G': {7, 4, 5, 5, 7}, 'H': {5, 5, 7, 5, 5}, 'I': {7, 2, 2, 2, 7}, 'J': {1, 1, 1, 5, 7},
	'K': {5, 5, 6, 5, 5}, 'L': {4, 4, 4, 4, 7}, 'M': {5, 7, 7, 5, 5}, 'N': {6, 5, 5, 5, 5}, 'O': {7, 5, 5, 5, 7},
	'P': {7, 5, 7, 4, 4}, 'Q': {7, 5, 5, 7, 1}, 'R': {6, 5, 6, 5, 5}, 'S': {7, 4, 7, 1, 7}, 'T': {7, 2, 2, 2, 2},
	'U': {5, 5, 5, 5, 7}, 'V': {5, 5, 5, 5, 2}, 'W': {5, 5, 7, 7, 5}, 'X': {5, 5, 2, 5, 5}, 'Y': {5, 5, 2, 2, 2},
	'Z': {7, 1, 2, 4, 7},
}

// text draws s at (x, y) with the 3×5 font scaled by scale; characters
// without a glyph are blanks.
func text(img *image.RGBA, x, y int, s string, c color.RGBA, scale int) {
	for _, r := range s {
		if g, ok := font[r]; ok {
			for row, bits := range g {
				for col := range 3 {
					if bits&(4>>col) != 0 {
						fill(img, image.Rect(x+col*scale, y+row*scale, x+(col+1)*scale, y+(row+1)*scale), c)
					}
				}
			}
		}
		x += 4 * scale
	}
}
