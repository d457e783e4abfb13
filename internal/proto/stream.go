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

// StreamErrorCode values used in QUIC RESET_STREAM and STOP_SENDING frames
// on data streams.
const (
	// StreamAborted: the TCP connection on the sender's side failed or was
	// reset; the peer must abort its side too.
	StreamAborted = 0x01
	// StreamRefused: the destination refused the connection or could not
	// be reached.
	StreamRefused = 0x02
	// StreamDone: the receiver has everything it wants and will read no
	// more (sent with STOP_SENDING after a normal close).
	StreamDone = 0x00
)

// ConnErrorCode values used when closing a whole QUIC connection.
const (
	ConnClosed        = 0x00 // normal close, after SessionClose
	ConnAuthFailed    = 0x10 // authentication failed or timed out
	ConnProtocolError = 0x11 // a malformed or unexpected message
	ConnShutdown      = 0x12 // the server is shutting down
	ConnForwardFailed = 0x13 // the forward request was refused
	ConnLimit         = 0x14 // a server limit refused the connection (busy, sessions per key)
)
