package proto

import (
	"encoding/binary"
	"io"
)

// StreamHeaderLen is the size of the connection-id header that starts every
// data stream.
const StreamHeaderLen = 4

// WriteStreamHeader writes the 4-byte big-endian connection id that opens a
// data stream.
func WriteStreamHeader(w io.Writer, connID uint32) error {
	var b [StreamHeaderLen]byte
	binary.BigEndian.PutUint32(b[:], connID)
	_, err := w.Write(b[:])
	return err
}

// ReadStreamHeader reads the connection id that opens a data stream.
func ReadStreamHeader(r io.Reader) (uint32, error) {
	var b [StreamHeaderLen]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return 0, err
	}
	return binary.BigEndian.Uint32(b[:]), nil
}
