package cli

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// seconds is a duration flag that takes plain seconds ("5", "0.5") as the
// specification writes them, or a Go duration ("500ms", "2m").
type seconds struct{ d *time.Duration }

func (s seconds) String() string {
	if s.d == nil {
		return ""
	}
	return s.d.String()
}

func (s seconds) Set(v string) error {
	if f, err := strconv.ParseFloat(v, 64); err == nil {
		switch {
		case f < 0:
			return fmt.Errorf("%q is negative", v)
		case !(f*float64(time.Second) < math.MaxInt64): // NaN too
			return fmt.Errorf("%q is not a number of seconds a duration can hold (up to about 290 years)", v)
		}
		*s.d = time.Duration(f * float64(time.Second))
		return nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return fmt.Errorf("%q is not a number of seconds or a duration such as 500ms", v)
	}
	if d < 0 {
		return fmt.Errorf("%q is negative", v)
	}
	*s.d = d
	return nil
}

func (seconds) Type() string { return "seconds" }

// byteRate is a bytes-per-second flag: a number with an optional K, M or G
// suffix (powers of 1000, either case; a B and a /s may follow), e.g.
// 50M or 50MB/s. A lowercase b is refused: 50Mb most often means bits.
type byteRate struct{ n *int64 }

func (b byteRate) String() string {
	if b.n == nil || *b.n == 0 {
		return "0"
	}
	return strconv.FormatInt(*b.n, 10)
}

func (b byteRate) Set(v string) error {
	n, ok := scaled(strings.TrimSuffix(v, "/s"), decimalUnits, 1e15)
	if !ok {
		return fmt.Errorf("%q is not a rate in bytes per second such as 50M (50 MB/s; K, M and G are powers of 1000)", v)
	}
	*b.n = n
	return nil
}

// The units scaled takes, by their upper-case spelling.
var (
	decimalUnits = map[string]float64{"": 1, "B": 1, "K": 1e3, "KB": 1e3, "M": 1e6, "MB": 1e6, "G": 1e9, "GB": 1e9}
	binaryUnits  = map[string]float64{"": 1, "B": 1, "K": 1 << 10, "KB": 1 << 10, "KIB": 1 << 10, "M": 1 << 20, "MB": 1 << 20, "MIB": 1 << 20, "G": 1 << 30, "GB": 1 << 30, "GIB": 1 << 30}
)

// scaled reads v as a number followed by one of units (in either case,
// but a lowercase b is never one: 50Mb most often means bits) and
// returns it in bytes, if that is from 0 to max.
func scaled(v string, units map[string]float64, max float64) (int64, bool) {
	num := strings.TrimRight(v, "KMGkmgiB")
	mult, ok := units[strings.ToUpper(v[len(num):])]
	f, err := strconv.ParseFloat(num, 64)
	if !ok || err != nil || !(f >= 0 && f*mult <= max) { // NaN fails both
		return 0, false
	}
	return int64(f * mult), true
}

func (byteRate) Type() string { return "bytes/s" }

// byteSize is a size flag in bytes: a number with an optional K, M or G
// suffix (powers of 1024; KiB, MiB and GiB are the same), e.g. 16M,
// within [min, max].
type byteSize struct {
	n        *int64
	min, max int64
}

func (b byteSize) String() string {
	if b.n == nil {
		return ""
	}
	return formatSize(*b.n)
}

// formatSize writes n in the largest binary unit that divides it.
func formatSize(n int64) string {
	for _, u := range []struct {
		suffix string
		shift  uint
	}{{"G", 30}, {"M", 20}, {"K", 10}} {
		if n != 0 && n%(1<<u.shift) == 0 {
			return strconv.FormatInt(n>>u.shift, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10)
}

func (b byteSize) Set(v string) error {
	n, ok := scaled(v, binaryUnits, 1<<50)
	if !ok {
		return fmt.Errorf("%q is not a size such as 16M (MiB) or 512K (KiB)", v)
	}
	if n < b.min || n > b.max {
		return fmt.Errorf("%s is outside %s to %s: give a size in that range, such as 16M (MiB)", v, formatSize(b.min), formatSize(b.max))
	}
	*b.n = n
	return nil
}

func (byteSize) Type() string { return "size" }
