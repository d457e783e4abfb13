package cli

import (
	"testing"
	"time"
)

func TestByteSize(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int64 // -1: refused
	}{
		{"16M", 16 << 20}, {"16MiB", 16 << 20}, {"16MB", 16 << 20}, {"16m", 16 << 20},
		{"512K", 512 << 10}, {"512k", 512 << 10}, {"512KiB", 512 << 10},
		{"1.5M", 3 << 19}, {"65536", 65536}, {"65536B", 65536}, {"64M", 64 << 20},
		{"1G", -1}, {"64.1M", -1}, {"65535", -1}, {"32K", -1}, // outside 64K to 64M
		{"16Mbit", -1}, {"16Mb", -1}, {"16i", -1}, {"M", -1}, {"", -1}, {"-1M", -1}, {"x", -1}, {"1e99", -1}, {"NaN", -1}, {"NaNM", -1}, {"+Inf", -1},
	} {
		n := int64(-1)
		err := byteSize{&n, 64 << 10, 64 << 20}.Set(c.in)
		check(t, c.in, err, n, c.want, -1)
	}
	for n, want := range map[int64]string{6 << 20: "6M", 512 << 10: "512K", 3 << 19: "1536K", 1 << 30: "1G", 1000: "1000"} {
		if got := formatSize(n); got != want {
			t.Errorf("formatSize(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestByteRate(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int64 // -1: refused
	}{
		{"50M", 50e6}, {"50m", 50e6}, {"50MB", 50e6}, {"50MB/s", 50e6}, {"50m/s", 50e6},
		{"1.5G", 1.5e9}, {"1g", 1e9}, {"100k", 100e3}, {"100KB", 100e3}, {"12345", 12345}, {"12345B", 12345}, {"0", 0},
		{"50Mb", -1}, {"50mbit", -1}, {"50MiB", -1}, {"M", -1}, {"", -1}, {"-1M", -1}, {"x", -1}, {"2000T", -1}, {"1e99", -1}, {"NaN", -1}, {"NaNM", -1}, {"Inf", -1},
	} {
		n := int64(-1)
		err := byteRate{&n}.Set(c.in)
		check(t, c.in, err, n, c.want, -1)
	}
}

func TestSeconds(t *testing.T) {
	for _, c := range []struct {
		in   string
		want time.Duration // -1: refused
	}{
		{"5", 5 * time.Second}, {"0.5", 500 * time.Millisecond}, {"0", 0}, {"500ms", 500 * time.Millisecond}, {"2m", 2 * time.Minute},
		{"-1", -1}, {"-1s", -1}, {"NaN", -1}, {"Inf", -1}, {"1e10", -1}, {"5x", -1}, {"", -1},
	} {
		d := time.Duration(-1)
		err := seconds{&d}.Set(c.in)
		check(t, c.in, err, d, c.want, -1)
	}
}

// check reports a flag's Set of in that returned err and left got: want
// equal to refused means Set must fail.
func check[T comparable](t *testing.T, in string, err error, got, want, refused T) {
	t.Helper()
	switch {
	case want == refused && err == nil:
		t.Errorf("%q: took it as %v, want an error", in, got)
	case want != refused && (err != nil || got != want):
		t.Errorf("%q: got %v, %v; want %v", in, got, err, want)
	}
}
