package proto

import (
	"encoding/binary"
	"fmt"
	"io"
)

// MaxDatagram is the largest UDP payload a data stream carries. A frame
// that claims more is a protocol error, never an allocation.
const MaxDatagram = 65535

// DatagramHeaderLen is the size of a datagram frame's length prefix.
const DatagramHeaderLen = 4

// AppendDatagram appends one datagram frame, [len u32 BE][payload], to b.
func AppendDatagram(b, payload []byte) ([]byte, error) {
	if len(payload) > MaxDatagram {
		return b, fmt.Errorf("datagram of %d bytes exceeds %d", len(payload), MaxDatagram)
	}
	b = binary.BigEndian.AppendUint32(b, uint32(len(payload)))
	return append(b, payload...), nil
}

// DatagramLen returns the payload length a frame's header (its first
// DatagramHeaderLen bytes) announces, unchecked.
func DatagramLen(hdr []byte) uint32 { return binary.BigEndian.Uint32(hdr) }

// ReadDatagram reads one datagram frame into buf, which must hold
// MaxDatagram bytes, and returns the payload length. io.EOF means the
// stream ended between frames.
func ReadDatagram(r io.Reader, buf []byte) (int, error) {
	var hdr [DatagramHeaderLen]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, err
	}
	n := DatagramLen(hdr[:])
	if n > MaxDatagram || int(n) > len(buf) {
		return 0, malformed("datagram length %d exceeds %d", n, MaxDatagram)
	}
	if _, err := io.ReadFull(r, buf[:n]); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return 0, err
	}
	return int(n), nil
}
