package sample

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// sparsePrefix marks a histogram in our sparse form (encodeHist). A Hist
// without it is HdrHistogram's V2 compressed form, which series recorded
// before are in; Decode reads both.
//
// Why not V2: it deflates every time, and a new deflate writer costs
// 0.4 ms and 830 KB of garbage per call. Every load client encodes one
// histogram a second and the monitor decodes all of them: with fifty clients
// that was a burst of work every process did at the same moment each second.
// A second's histogram has a few hundred non-zero buckets among ~17,000;
// listing those takes about twice the bytes of the deflated form (1.5 KB
// for 600 shakes) and a sixth of the time.
const sparsePrefix = "s1:"

// Bounds on the parameters a sparse histogram may carry: Decode reads
// what other processes send, and a histogram's size follows from them.
const (
	maxSigFigs = 3
	maxHighest = 1 << 40
)

// errBadHist is returned for a Hist that cannot be decoded.
var errBadHist = errors.New("sample: bad histogram")

// encodeHist writes h as sparsePrefix and the base64 of uvarints: lowest
// and highest trackable values and significant figures, then for every
// non-zero bucket the distance of its lowest value from the previous
// one's, and its count. Values, not bucket indexes: the decoder records
// them into its histogram directly, which also checks their range.
func encodeHist(h *hdrhistogram.Histogram) string {
	s := h.Export()
	lay := layoutOf(s.LowestTrackableValue, s.SignificantFigures)
	b := make([]byte, 0, 256)
	b = binary.AppendUvarint(b, uint64(s.LowestTrackableValue))
	b = binary.AppendUvarint(b, uint64(s.HighestTrackableValue))
	b = binary.AppendUvarint(b, uint64(s.SignificantFigures))
	var prev int64
	for i, c := range s.Counts {
		if c <= 0 {
			continue
		}
		v := lay.valueAt(int32(i))
		b = binary.AppendUvarint(b, uint64(v-prev))
		b = binary.AppendUvarint(b, uint64(c))
		prev = v
	}
	return sparsePrefix + encodeRaw(b)
}

// layout is how an HdrHistogram places values in its count slots (the
// arithmetic of hdrhistogram-go's New and its index-to-value mapping,
// which every HdrHistogram shares).
type layout struct {
	unitMagnitude, subBucketHalfCountMagnitude, subBucketHalfCount int32
}

func layoutOf(lowest, sigFigs int64) layout {
	countMagnitude := int32(math.Ceil(math.Log2(2 * math.Pow10(int(sigFigs)))))
	half := max(countMagnitude, 1) - 1
	return layout{
		unitMagnitude:               max(int32(math.Floor(math.Log2(float64(lowest)))), 0),
		subBucketHalfCountMagnitude: half,
		subBucketHalfCount:          1 << half,
	}
}

// valueAt is the lowest value that counts in slot i.
func (l layout) valueAt(i int32) int64 {
	bucket := (i >> l.subBucketHalfCountMagnitude) - 1
	sub := (i & (l.subBucketHalfCount - 1)) + l.subBucketHalfCount
	if bucket < 0 {
		sub -= l.subBucketHalfCount
		bucket = 0
	}
	return int64(sub) << (bucket + l.unitMagnitude)
}

// decodeHist reads what encodeHist wrote (without the prefix).
func decodeHist(text string) (*hdrhistogram.Histogram, error) {
	b, err := base64.RawStdEncoding.DecodeString(text)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errBadHist, err)
	}
	var hdr [3]uint64
	for i := range hdr {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			return nil, fmt.Errorf("%w: truncated header", errBadHist)
		}
		hdr[i], b = v, b[n:]
	}
	lowest, highest, sf := hdr[0], hdr[1], hdr[2]
	if lowest < 1 || highest < 2*lowest || highest > maxHighest || sf < 1 || sf > maxSigFigs {
		return nil, fmt.Errorf("%w: range %d-%d with %d significant figures", errBadHist, lowest, highest, sf)
	}
	h := hdrhistogram.New(int64(lowest), int64(highest), int(sf))
	var v uint64
	for len(b) > 0 {
		d, n := binary.Uvarint(b)
		if n <= 0 || d > maxHighest {
			return nil, fmt.Errorf("%w: bad value", errBadHist)
		}
		b = b[n:]
		c, n := binary.Uvarint(b)
		if n <= 0 || c == 0 || c > 1<<62 {
			return nil, fmt.Errorf("%w: bad count", errBadHist)
		}
		b = b[n:]
		if v += d; v > highest {
			return nil, fmt.Errorf("%w: value %d above the highest %d", errBadHist, v, highest)
		}
		if err := h.RecordValues(int64(v), int64(c)); err != nil {
			return nil, fmt.Errorf("%w: %w", errBadHist, err)
		}
	}
	return h, nil
}

// decodeAny reads a Hist in either form.
func decodeAny(text string) (*hdrhistogram.Histogram, error) {
	if rest, ok := strings.CutPrefix(text, sparsePrefix); ok {
		return decodeHist(rest)
	}
	return decodeV2(text)
}

// decodeV2 reads HdrHistogram's V2 form. hdrhistogram-go's Decode panics
// on some malformed input (an empty or short one: found by
// FuzzDecodeHist), and the monitor decodes what it is sent, so a panic
// is an error here.
func decodeV2(text string) (h *hdrhistogram.Histogram, err error) {
	defer func() {
		if r := recover(); r != nil {
			h, err = nil, fmt.Errorf("%w: %v", errBadHist, r)
		}
	}()
	h, err = hdrhistogram.Decode([]byte(text))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errBadHist, err)
	}
	return h, nil
}

// encodeRaw is the text form of a sparse payload.
func encodeRaw(b []byte) string { return base64.RawStdEncoding.EncodeToString(b) }
