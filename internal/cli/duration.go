package cli

import (
	"fmt"
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
		if f < 0 {
			return fmt.Errorf("%q is negative", v)
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
// suffix (powers of 1000), e.g. 50M.
type byteRate struct{ n *int64 }

func (b byteRate) String() string {
	if b.n == nil || *b.n == 0 {
		return "0"
	}
	return strconv.FormatInt(*b.n, 10)
}

func (b byteRate) Set(v string) error {
	mult := int64(1)
	s := strings.TrimSuffix(strings.TrimSuffix(v, "/s"), "B")
	switch {
	case strings.HasSuffix(s, "K") || strings.HasSuffix(s, "k"):
		mult, s = 1e3, s[:len(s)-1]
	case strings.HasSuffix(s, "M"):
		mult, s = 1e6, s[:len(s)-1]
	case strings.HasSuffix(s, "G"):
		mult, s = 1e9, s[:len(s)-1]
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f < 0 || f*float64(mult) > 1e15 {
		return fmt.Errorf("%q is not a rate in bytes per second such as 50M", v)
	}
	*b.n = int64(f * float64(mult))
	return nil
}

func (byteRate) Type() string { return "bytes/s" }
