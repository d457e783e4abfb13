package cli

import (
	"fmt"
	"strconv"
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
