package sample

import (
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// latencies fills a histogram like a second of a load client's: n values
// around a few ms with a tail, from a fixed seed.
func latencies(n int, highest int64, sf int) *hdrhistogram.Histogram {
	h := hdrhistogram.New(1, highest, sf)
	r := rand.New(rand.NewPCG(1, 2))
	for range n {
		_ = h.RecordValue(min(int64(500+r.ExpFloat64()*3000), highest))
	}
	return h
}

func TestHistRoundTrip(t *testing.T) {
	cases := []struct {
		name string
		h    *hdrhistogram.Histogram
	}{
		{"one value", func() *hdrhistogram.Histogram {
			h := hdrhistogram.New(1, 10_000_000, 3)
			_ = h.RecordValue(1234)
			return h
		}()},
		{"a second of a client", latencies(600, 10_000_000, 3)},
		{"many values", latencies(100_000, 60_000_000, 3)},
		{"two figures", latencies(1000, 5_000_000, 2)},
		{"lowest above one", func() *hdrhistogram.Histogram {
			h := hdrhistogram.New(10, 60_000_000, 3)
			r := rand.New(rand.NewPCG(3, 4))
			for range 5000 {
				_ = h.RecordValue(10 + int64(r.ExpFloat64()*50_000))
			}
			return h
		}()},
		{"extremes", func() *hdrhistogram.Histogram {
			h := hdrhistogram.New(1, 10_000_000, 3)
			_ = h.RecordValues(1, 7)
			_ = h.RecordValues(10_000_000, 1<<40)
			return h
		}()},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l := LatencyOf(c.h)
			if !strings.HasPrefix(l.Hist, sparsePrefix) {
				t.Fatalf("Hist %.20q is not in the sparse form", l.Hist)
			}
			got, err := l.Decode()
			if err != nil {
				t.Fatal(err)
			}
			want := c.h.Export()
			have := got.Export()
			if have.LowestTrackableValue != want.LowestTrackableValue || have.HighestTrackableValue != want.HighestTrackableValue ||
				have.SignificantFigures != want.SignificantFigures || !slices.Equal(have.Counts, want.Counts) {
				t.Fatalf("decoded histogram differs from the encoded one")
			}
			if got.TotalCount() != c.h.TotalCount() || got.ValueAtQuantile(99) != c.h.ValueAtQuantile(99) || got.Max() != c.h.Max() {
				t.Fatalf("count/p99/max %d/%d/%d, want %d/%d/%d", got.TotalCount(), got.ValueAtQuantile(99), got.Max(),
					c.h.TotalCount(), c.h.ValueAtQuantile(99), c.h.Max())
			}
		})
	}
}

// Series recorded before the sparse form carry HdrHistogram's V2 form.
func TestDecodeReadsV2(t *testing.T) {
	h := latencies(600, 10_000_000, 3)
	b, err := h.Encode(hdrhistogram.V2CompressedEncodingCookieBase)
	if err != nil {
		t.Fatal(err)
	}
	got, err := (&Latency{Hist: string(b)}).Decode()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got.Export().Counts, h.Export().Counts) {
		t.Fatal("V2 histogram decoded wrong")
	}
}

func TestDecodeRefusesBadHist(t *testing.T) {
	good := encodeHist(latencies(50, 10_000_000, 3))
	cases := map[string]string{
		"not base64":          sparsePrefix + "!!!",
		"empty":               sparsePrefix,
		"truncated":           good[:len(sparsePrefix)+3],
		"huge range":          sparsePrefix + b64(1, 1<<50, 3),
		"too many figures":    sparsePrefix + b64(1, 1000, 5),
		"zero lowest":         sparsePrefix + b64(1-1, 1000, 3),
		"value past highest":  sparsePrefix + b64(1, 1000, 1, 999, 1, 5, 1),
		"zero count":          sparsePrefix + b64(1, 1000, 1, 5, 0),
		"count without value": sparsePrefix + b64(1, 1000, 1, 5),
		"v2 garbage":          "HISTFAAAxyz",
	}
	for name, hist := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := (&Latency{Hist: hist}).Decode(); !errors.Is(err, errBadHist) {
				t.Fatalf("Decode(%q) = %v, want errBadHist", hist, err)
			}
		})
	}
}

// FuzzDecodeHist: the monitor decodes what other processes send; no input
// may crash it, and what decodes encodes back to the same histogram.
func FuzzDecodeHist(f *testing.F) {
	f.Add(encodeHist(latencies(50, 10_000_000, 3)))
	f.Add(sparsePrefix + b64(1, 1000, 1, 32, 1, 5, 3, 2))
	f.Add(sparsePrefix + b64(10, 1<<30, 2, 100, 7))
	f.Add("HISTFAAAAB")
	f.Fuzz(func(t *testing.T, s string) {
		h, err := decodeAny(s)
		if err != nil {
			return
		}
		again, err := decodeAny(encodeHist(h))
		if err != nil {
			t.Fatalf("re-encoded histogram does not decode: %v", err)
		}
		if !slices.Equal(again.Export().Counts, h.Export().Counts) {
			t.Fatal("re-encoded histogram differs")
		}
	})
}

// b64 is the sparse form's payload from its uvarints.
func b64(vs ...uint64) string {
	var b []byte
	for _, v := range vs {
		for v >= 0x80 {
			b = append(b, byte(v)|0x80)
			v >>= 7
		}
		b = append(b, byte(v))
	}
	return encodeRaw(b)
}

// BenchmarkHist compares the sparse form with HdrHistogram's V2 form for a
// second of one load client's latencies (600 shakes), as the client encodes
// it and the monitor decodes it once a second.
func BenchmarkHist(b *testing.B) {
	h := latencies(600, 10_000_000, 3)
	v2, _ := h.Encode(hdrhistogram.V2CompressedEncodingCookieBase)
	sparse := encodeHist(h)
	b.Run("encode/v2", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = h.Encode(hdrhistogram.V2CompressedEncodingCookieBase)
		}
		b.ReportMetric(float64(len(v2)), "bytes")
	})
	b.Run("encode/sparse", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = encodeHist(h)
		}
		b.ReportMetric(float64(len(sparse)), "bytes")
	})
	b.Run("decode/v2", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = decodeAny(string(v2))
		}
	})
	b.Run("decode/sparse", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = decodeAny(sparse)
		}
	})
}
