package proto

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// The vectors below are the ones printed in docs/PROTOCOL.md; keep them equal.
var vectors = []struct {
	name string
	msg  Message
	hex  string
}{
	{"LocalForwardRequest", LocalForwardRequest{Protocol: TCP, Destination: "127.0.0.1:22", LocalSource: "9022/tcp"},
		"010017" + "01" + "000c" + hex.EncodeToString([]byte("127.0.0.1:22")) + hex.EncodeToString([]byte("9022/tcp"))},
	{"LocalForwardResponse", ForwardResponse{Status: StatusSuccess}, "02000100"},
	{"LocalNewConnection", NewConnection{ConnID: 1, Protocol: TCP}, "030005" + "00000001" + "01"},
	{"RemoteForwardRequest", RemoteForwardRequest{Port: 9022, Protocol: TCP, LocalDestination: "22"},
		"210005" + "233e" + "01" + "3232"},
	{"RemoteForwardRequest shared", RemoteForwardRequest{Port: 9022, Protocol: TCP, Shared: true, Token: 0x0102030405060708, LocalDestination: "22"},
		"21000d" + "233e" + "81" + "0102030405060708" + "3232"},
	{"RemoteForwardResponse", ForwardResponse{Remote: true, Status: StatusPortInUse, Message: "in use"},
		"220007" + "01" + hex.EncodeToString([]byte("in use"))},
	{"RemoteNewConnection", NewConnection{Remote: true, ConnID: 0x01020304, Protocol: UDP}, "230005" + "01020304" + "02"},
	{"SessionClose", SessionClose{}, "410000"},
	{"SessionMigrate", SessionMigrate{}, "420000"},
	{"ConnectionClose", ConnectionClose{ConnID: 7, Reason: ReasonRefused}, "610005" + "00000007" + "01"},
}

func TestVectors(t *testing.T) {
	for _, v := range vectors {
		t.Run(v.name, func(t *testing.T) {
			b, err := Append(nil, v.msg)
			if err != nil {
				t.Fatal(err)
			}
			if got := hex.EncodeToString(b); got != v.hex {
				t.Errorf("encoded = %s, want %s", got, v.hex)
			}
			want, _ := hex.DecodeString(v.hex)
			got, err := NewReader(bytes.NewReader(want)).Read()
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(v.msg, got); diff != "" {
				t.Errorf("decoded (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDecodeRejects(t *testing.T) {
	tests := []struct {
		name string
		hex  string
	}{
		{"unknown type", "7f0000"},
		{"new connection short", "23000400000001"},
		{"new connection long", "2300060000000101ff"},
		{"bad protocol", "2300050000000103"},
		{"lpf dest length past end", "010004" + "01" + "00ff" + "41"},
		{"lpf short", "010001" + "01"},
		{"rpf short", "210002" + "0016"},
		{"rpf bad protocol", "210003" + "0016" + "09"},
		{"rpf shared bad protocol", "21000b" + "0016" + "89" + "0102030405060708"},
		{"rpf shared short token", "210006" + "0016" + "81" + "010203"},
		{"response empty", "220000"},
		{"invalid utf8", "220003" + "00" + "fffe"},
		{"close short", "610001" + "00"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, _ := hex.DecodeString(tt.hex)
			_, err := NewReader(bytes.NewReader(b)).Read()
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("Read() error = %v, want ErrMalformed", err)
			}
		})
	}
}

func TestReadTruncated(t *testing.T) {
	b, _ := Append(nil, RemoteForwardRequest{Port: 22, Protocol: TCP, LocalDestination: "hello"})
	for n := 1; n < len(b); n++ {
		_, err := NewReader(bytes.NewReader(b[:n])).Read()
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("Read() of %d/%d bytes: error = %v, want io.ErrUnexpectedEOF", n, len(b), err)
		}
	}
	if _, err := NewReader(bytes.NewReader(nil)).Read(); err != io.EOF {
		t.Errorf("Read() of empty stream: error = %v, want io.EOF", err)
	}
}

func TestAppendOversized(t *testing.T) {
	_, err := Append(nil, ForwardResponse{Message: strings.Repeat("x", MaxPayload)})
	if err == nil {
		t.Fatal("Append accepted a payload larger than MaxPayload")
	}
}

func FuzzDecode(f *testing.F) {
	for _, v := range vectors {
		b, _ := hex.DecodeString(v.hex)
		f.Add(b)
	}
	f.Add([]byte{0x01, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		r := NewReader(bytes.NewReader(b))
		for {
			m, err := r.Read()
			if err != nil {
				return
			}
			// Whatever decodes must re-encode to a frame that decodes to the same message.
			enc, err := Append(nil, m)
			if err != nil {
				t.Fatalf("re-encode %#v: %v", m, err)
			}
			m2, err := NewReader(bytes.NewReader(enc)).Read()
			if err != nil {
				t.Fatalf("decode of re-encoded %#v: %v", m, err)
			}
			if diff := cmp.Diff(m, m2); diff != "" {
				t.Fatalf("round trip (-first +second):\n%s", diff)
			}
		}
	})
}

func BenchmarkControlRoundTrip(b *testing.B) {
	msg := NewConnection{Remote: true, ConnID: 42, Protocol: TCP}
	buf := make([]byte, 0, 64)
	var rd bytes.Reader
	r := NewReader(&rd)
	b.ReportAllocs()
	for range b.N {
		enc, _ := Append(buf[:0], msg)
		rd.Reset(enc)
		if _, err := r.Read(); err != nil {
			b.Fatal(err)
		}
	}
}
