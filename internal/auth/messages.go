package auth

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"
)

// Wire sizes of the handshake messages (see docs/PROTOCOL.md).
const (
	macSize       = 32
	challengeSize = 32

	pskMagic    = "QUICPORT_PSK"  // 12 bytes
	x25519Magic = "QUICPORT_AUTH" // 13 bytes
	mtlsMagic   = "QUICPORT_MTLS" // 13 bytes: the TLS layer already verified the client certificate

	pskHelloSize    = len(pskMagic) + 8 + KeySize + macSize // 84
	x25519HelloSize = len(x25519Magic) + KeySize + challengeSize
	pskServerSize   = KeySize + challengeSize + macSize
	x25519ServerLen = KeySize + KeySize + challengeSize + macSize
)

// errMalformed marks handshake bytes that do not parse.
var errMalformed = errors.New("malformed authentication message")

// pskHello is the client's first PSK message.
type pskHello struct {
	Timestamp uint64 // Unix seconds
	Ephemeral PublicKey
	MAC       [macSize]byte
}

func (m pskHello) marshal() []byte {
	b := make([]byte, 0, pskHelloSize)
	b = append(b, pskMagic...)
	b = binary.BigEndian.AppendUint64(b, m.Timestamp)
	b = append(b, m.Ephemeral[:]...)
	return append(b, m.MAC[:]...)
}

// parsePSKHello parses the 72 bytes that follow the PSK magic.
func parsePSKHello(b []byte) (pskHello, error) {
	var m pskHello
	if len(b) != pskHelloSize-len(pskMagic) {
		return m, fmt.Errorf("%w: PSK hello of %d bytes", errMalformed, len(b))
	}
	m.Timestamp = binary.BigEndian.Uint64(b)
	copy(m.Ephemeral[:], b[8:])
	copy(m.MAC[:], b[8+KeySize:])
	return m, nil
}

// x25519Hello is the client's first X25519 message.
type x25519Hello struct {
	Static    PublicKey
	Challenge [challengeSize]byte
}

func (m x25519Hello) marshal() []byte {
	b := make([]byte, 0, x25519HelloSize)
	b = append(b, x25519Magic...)
	b = append(b, m.Static[:]...)
	return append(b, m.Challenge[:]...)
}

// parseX25519Hello parses the 64 bytes that follow the X25519 magic.
func parseX25519Hello(b []byte) (x25519Hello, error) {
	var m x25519Hello
	if len(b) != x25519HelloSize-len(x25519Magic) {
		return m, fmt.Errorf("%w: X25519 hello of %d bytes", errMalformed, len(b))
	}
	copy(m.Static[:], b)
	copy(m.Challenge[:], b[KeySize:])
	return m, nil
}

// pskServer is the server's PSK reply after a success status.
type pskServer struct {
	Ephemeral PublicKey
	Challenge [challengeSize]byte
	MAC       [macSize]byte
}

func (m pskServer) marshal() []byte {
	b := make([]byte, 0, pskServerSize)
	b = append(b, m.Ephemeral[:]...)
	b = append(b, m.Challenge[:]...)
	return append(b, m.MAC[:]...)
}

func parsePSKServer(b []byte) (pskServer, error) {
	var m pskServer
	if len(b) != pskServerSize {
		return m, fmt.Errorf("%w: PSK server reply of %d bytes", errMalformed, len(b))
	}
	copy(m.Ephemeral[:], b)
	copy(m.Challenge[:], b[KeySize:])
	copy(m.MAC[:], b[KeySize+challengeSize:])
	return m, nil
}

// x25519Server is the server's X25519 reply after a success status.
type x25519Server struct {
	Static    PublicKey
	Ephemeral PublicKey
	Challenge [challengeSize]byte
	MAC       [macSize]byte
}

func (m x25519Server) marshal() []byte {
	b := make([]byte, 0, x25519ServerLen)
	b = append(b, m.Static[:]...)
	b = append(b, m.Ephemeral[:]...)
	b = append(b, m.Challenge[:]...)
	return append(b, m.MAC[:]...)
}

func parseX25519Server(b []byte) (x25519Server, error) {
	var m x25519Server
	if len(b) != x25519ServerLen {
		return m, fmt.Errorf("%w: X25519 server reply of %d bytes", errMalformed, len(b))
	}
	copy(m.Static[:], b)
	copy(m.Ephemeral[:], b[KeySize:])
	copy(m.Challenge[:], b[2*KeySize:])
	copy(m.MAC[:], b[2*KeySize+challengeSize:])
	return m, nil
}

// Status codes the server sends before each of its handshake replies.
const (
	statusOK       = 0x00
	statusRejected = 0x01
)

// maxReason bounds the rejection text; its length is one byte on the wire.
const maxReason = 255

// writeStatus writes [status u8][reason len u8][reason]. An OK status has an
// empty reason.
func writeStatus(w io.Writer, status byte, reason string) error {
	if len(reason) > maxReason {
		reason = reason[:maxReason]
	}
	b := make([]byte, 0, 2+len(reason))
	b = append(b, status, byte(len(reason)))
	b = append(b, reason...)
	_, err := w.Write(b)
	return err
}

// readStatus reads a status written by writeStatus. It allocates at most
// maxReason bytes.
func readStatus(r io.Reader) (status byte, reason string, err error) {
	var hdr [2]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, "", err
	}
	buf := make([]byte, hdr[1])
	if _, err := io.ReadFull(r, buf); err != nil {
		return 0, "", err
	}
	reason, err = parseReason(hdr[0], buf)
	return hdr[0], reason, err
}

func parseReason(status byte, b []byte) (string, error) {
	if status != statusOK && status != statusRejected {
		return "", fmt.Errorf("%w: unknown status 0x%02x", errMalformed, status)
	}
	if !utf8.Valid(b) {
		return "", fmt.Errorf("%w: rejection reason is not UTF-8", errMalformed)
	}
	return string(b), nil
}
