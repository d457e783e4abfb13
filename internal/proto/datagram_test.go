package proto

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

func TestDatagramRoundTrip(t *testing.T) {
	var stream []byte
	sizes := []int{0, 1, 1200, MaxDatagram}
	for _, n := range sizes {
		var err error
		stream, err = AppendDatagram(stream, bytes.Repeat([]byte{byte(n)}, n))
		if err != nil {
			t.Fatal(err)
		}
	}
	r := bytes.NewReader(stream)
	buf := make([]byte, MaxDatagram)
	for _, want := range sizes {
		n, err := ReadDatagram(r, buf)
		if err != nil || n != want || !bytes.Equal(buf[:n], bytes.Repeat([]byte{byte(want)}, want)) {
			t.Fatalf("datagram of %d: got %d, %v", want, n, err)
		}
	}
	if _, err := ReadDatagram(r, buf); err != io.EOF {
		t.Fatalf("after the last frame: %v, want io.EOF", err)
	}
	if _, err := AppendDatagram(nil, make([]byte, MaxDatagram+1)); err == nil {
		t.Fatal("AppendDatagram accepted an oversized datagram")
	}
}

func TestDatagramOversizedLength(t *testing.T) {
	// A peer claiming 4 GiB must get a protocol error, not an allocation.
	_, err := ReadDatagram(bytes.NewReader([]byte{0xff, 0xff, 0xff, 0xff, 1, 2, 3}), make([]byte, MaxDatagram))
	if !errors.Is(err, ErrMalformed) {
		t.Fatalf("error = %v, want ErrMalformed", err)
	}
	_, err = ReadDatagram(bytes.NewReader([]byte{0, 0, 0, 5, 1, 2}), make([]byte, MaxDatagram))
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("truncated frame: %v", err)
	}
}

func FuzzReadDatagram(f *testing.F) {
	f.Add([]byte{0, 0, 0, 1, 'x'})
	f.Add([]byte{0, 1, 0, 0})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	buf := make([]byte, MaxDatagram)
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bytes.NewReader(b)
		for {
			n, err := ReadDatagram(r, buf)
			if err != nil {
				return
			}
			if n > MaxDatagram {
				t.Fatalf("read %d bytes", n)
			}
		}
	})
}
