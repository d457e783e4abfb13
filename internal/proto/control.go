// Package proto owns quicport's wire format after authentication: the
// control messages exchanged on the session's first stream and the header
// that starts every data stream.
//
// Every decoder here bounds lengths before it allocates and rejects trailing
// or missing bytes; none of them trusts the peer. The package does no I/O
// beyond reading and writing whole frames.
package proto

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"
)

// MsgType identifies a control message. Numbering follows the quicport
// specification: 0x0X local forwarding, 0x2X remote forwarding, 0x4X
// session control, 0x6X connection control.
type MsgType uint8

// Control message types.
const (
	TypeLocalForwardRequest   MsgType = 0x01
	TypeLocalForwardResponse  MsgType = 0x02
	TypeLocalNewConnection    MsgType = 0x03
	TypeRemoteForwardRequest  MsgType = 0x21
	TypeRemoteForwardResponse MsgType = 0x22
	TypeRemoteNewConnection   MsgType = 0x23
	TypeSessionClose          MsgType = 0x41
	TypeSessionMigrate        MsgType = 0x42
	TypeConnectionClose       MsgType = 0x61
)

func (t MsgType) String() string {
	switch t {
	case TypeLocalForwardRequest:
		return "LocalForwardRequest"
	case TypeLocalForwardResponse:
		return "LocalForwardResponse"
	case TypeLocalNewConnection:
		return "LocalNewConnection"
	case TypeRemoteForwardRequest:
		return "RemoteForwardRequest"
	case TypeRemoteForwardResponse:
		return "RemoteForwardResponse"
	case TypeRemoteNewConnection:
		return "RemoteNewConnection"
	case TypeSessionClose:
		return "SessionClose"
	case TypeSessionMigrate:
		return "SessionMigrate"
	case TypeConnectionClose:
		return "ConnectionClose"
	}
	return fmt.Sprintf("MsgType(0x%02x)", uint8(t))
}

// MaxPayload is the largest control payload the 16-bit length field can
// carry. Reading a frame never allocates more than this.
const MaxPayload = 0xFFFF

// headerLen is the size of [type u8][len u16 BE].
const headerLen = 3

// Protocol is the transport protocol of a forward or tunneled connection.
type Protocol uint8

// Transport protocols on the wire.
const (
	TCP Protocol = 0x01
	UDP Protocol = 0x02
)

func (p Protocol) String() string {
	switch p {
	case TCP:
		return "tcp"
	case UDP:
		return "udp"
	}
	return fmt.Sprintf("protocol(0x%02x)", uint8(p))
}

func (p Protocol) valid() bool { return p == TCP || p == UDP }

// Status is the result carried by a forward response.
type Status uint8

// Forward response statuses.
const (
	StatusSuccess          Status = 0x00
	StatusPortInUse        Status = 0x01
	StatusPermissionDenied Status = 0x02
	StatusInternalError    Status = 0x03
)

func (s Status) String() string {
	switch s {
	case StatusSuccess:
		return "success"
	case StatusPortInUse:
		return "port in use"
	case StatusPermissionDenied:
		return "permission denied"
	case StatusInternalError:
		return "internal error"
	}
	return fmt.Sprintf("status(0x%02x)", uint8(s))
}

// CloseReason says why a tunneled connection ended.
type CloseReason uint8

// Connection close reasons.
const (
	ReasonNormal  CloseReason = 0x00
	ReasonRefused CloseReason = 0x01
	ReasonTimeout CloseReason = 0x02
	ReasonError   CloseReason = 0x03
)

func (r CloseReason) String() string {
	switch r {
	case ReasonNormal:
		return "normal"
	case ReasonRefused:
		return "refused"
	case ReasonTimeout:
		return "timeout"
	case ReasonError:
		return "error"
	}
	return fmt.Sprintf("reason(0x%02x)", uint8(r))
}

// Message is one decoded control message. Exactly one concrete type below
// implements it per message type.
type Message interface {
	Type() MsgType
	// appendPayload appends the encoded payload (without the frame header).
	appendPayload(b []byte) []byte
}

// LocalForwardRequest asks the server to accept LPF streams and connect them
// to Destination.
type LocalForwardRequest struct {
	Protocol    Protocol
	Destination string // host:port on the server's side
	LocalSource string // the client's listen spec, for the server's logs only
}

// ForwardResponse answers a LocalForwardRequest or RemoteForwardRequest.
// For a successful remote forward, Message is the address the server
// listens on (for example "[::]:9022"), so a client that asked for port 0
// learns the port.
type ForwardResponse struct {
	Remote  bool // true: RemoteForwardResponse (0x22), false: LocalForwardResponse (0x02)
	Status  Status
	Message string
}

// NewConnection announces a tunneled connection. Remote selects
// RemoteNewConnection (0x23, server to client) over LocalNewConnection
// (0x03, client to server). The data stream carries the same ID in its
// header, so the stream, not this message, is authoritative.
type NewConnection struct {
	Remote   bool
	ConnID   uint32
	Protocol Protocol
}

// RemoteForwardRequest asks the server to listen on Port and send each
// accepted connection to the client.
//
// Shared (quicport's addition) asks to share the port with the other
// sessions of the same client process, named by Token: the first such
// session opens it, the others join it, and each accepted connection goes
// to the member session carrying the fewest. On the wire it is the
// protocol byte's high bit (SharedFlag), followed by the 8-byte token.
type RemoteForwardRequest struct {
	Port             uint16
	Protocol         Protocol
	Shared           bool
	Token            uint64 // with Shared: the client process's random token
	LocalDestination string // the client's destination, for the server's logs only
}

// SharedFlag marks a shared RemoteForwardRequest in its protocol byte.
const SharedFlag = 0x80

// SessionClose announces that the sender is ending the QUIC session.
type SessionClose struct{}

// SessionMigrate (server to client) asks the client to set its forward up
// again on a fresh QUIC connection while this one keeps serving the
// tunneled connections it already carries: the server is draining for a
// graceful restart. The old session ends once it is empty: a local-forward
// client closes it (SessionClose) when its last connection has ended; for a
// remote forward the server does, after the new session took over the port.
type SessionMigrate struct{}

// ConnectionClose announces that a tunneled connection ended. It is advisory:
// a stream's FIN or reset is what actually ends the data, so a ConnectionClose
// overtaking the last bytes of a stream loses nothing.
type ConnectionClose struct {
	ConnID uint32
	Reason CloseReason
}

func (LocalForwardRequest) Type() MsgType  { return TypeLocalForwardRequest }
func (RemoteForwardRequest) Type() MsgType { return TypeRemoteForwardRequest }
func (SessionClose) Type() MsgType         { return TypeSessionClose }
func (SessionMigrate) Type() MsgType       { return TypeSessionMigrate }
func (ConnectionClose) Type() MsgType      { return TypeConnectionClose }

func (m ForwardResponse) Type() MsgType {
	if m.Remote {
		return TypeRemoteForwardResponse
	}
	return TypeLocalForwardResponse
}

func (m NewConnection) Type() MsgType {
	if m.Remote {
		return TypeRemoteNewConnection
	}
	return TypeLocalNewConnection
}

func (m LocalForwardRequest) appendPayload(b []byte) []byte {
	b = append(b, byte(m.Protocol))
	b = binary.BigEndian.AppendUint16(b, uint16(len(m.Destination)))
	b = append(b, m.Destination...)
	return append(b, m.LocalSource...)
}

func (m ForwardResponse) appendPayload(b []byte) []byte {
	b = append(b, byte(m.Status))
	return append(b, m.Message...)
}

func (m NewConnection) appendPayload(b []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, m.ConnID)
	return append(b, byte(m.Protocol))
}

func (m RemoteForwardRequest) appendPayload(b []byte) []byte {
	b = binary.BigEndian.AppendUint16(b, m.Port)
	if m.Shared {
		b = append(b, byte(m.Protocol)|SharedFlag)
		b = binary.BigEndian.AppendUint64(b, m.Token)
	} else {
		b = append(b, byte(m.Protocol))
	}
	return append(b, m.LocalDestination...)
}

func (SessionClose) appendPayload(b []byte) []byte   { return b }
func (SessionMigrate) appendPayload(b []byte) []byte { return b }

func (m ConnectionClose) appendPayload(b []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, m.ConnID)
	return append(b, byte(m.Reason))
}

// ErrMalformed is wrapped by every decoding error caused by the peer's bytes
// (as opposed to I/O errors), so callers can log a protocol violation.
var ErrMalformed = errors.New("malformed control message")

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

// Append encodes m as a complete frame appended to b. It fails only when the
// payload does not fit the 16-bit length field.
func Append(b []byte, m Message) ([]byte, error) {
	start := len(b)
	b = append(b, byte(m.Type()), 0, 0)
	b = m.appendPayload(b)
	n := len(b) - start - headerLen
	if n > MaxPayload {
		return b[:start], fmt.Errorf("encode %v: payload of %d bytes exceeds %d", m.Type(), n, MaxPayload)
	}
	binary.BigEndian.PutUint16(b[start+1:], uint16(n))
	return b, nil
}

// Write encodes m and writes it to w as one frame.
func Write(w io.Writer, m Message) error {
	b, err := Append(make([]byte, 0, 64), m)
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

// Reader decodes frames from a stream. It reuses one buffer of at most
// MaxPayload bytes, so a peer cannot make it allocate more.
type Reader struct {
	r   io.Reader
	hdr [headerLen]byte
	buf []byte
}

// NewReader returns a Reader for r.
func NewReader(r io.Reader) *Reader { return &Reader{r: r} }

// Read reads and decodes the next frame. io.EOF means the stream ended
// cleanly between frames; a frame cut short is io.ErrUnexpectedEOF.
func (r *Reader) Read() (Message, error) {
	if _, err := io.ReadFull(r.r, r.hdr[:]); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint16(r.hdr[1:]))
	if cap(r.buf) < n {
		r.buf = make([]byte, n)
	}
	payload := r.buf[:n]
	if _, err := io.ReadFull(r.r, payload); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return Decode(MsgType(r.hdr[0]), payload)
}

// Decode parses one payload of type t. The returned message does not alias
// payload.
func Decode(t MsgType, p []byte) (Message, error) {
	switch t {
	case TypeLocalForwardRequest:
		if len(p) < 3 {
			return nil, malformed("%v payload of %d bytes, need at least 3", t, len(p))
		}
		proto, err := decodeProtocol(t, p[0])
		if err != nil {
			return nil, err
		}
		dlen := int(binary.BigEndian.Uint16(p[1:3]))
		if dlen > len(p)-3 {
			return nil, malformed("%v destination length %d exceeds the %d bytes left", t, dlen, len(p)-3)
		}
		dest, err := decodeText(t, "destination", p[3:3+dlen])
		if err != nil {
			return nil, err
		}
		src, err := decodeText(t, "local source", p[3+dlen:])
		if err != nil {
			return nil, err
		}
		return LocalForwardRequest{Protocol: proto, Destination: dest, LocalSource: src}, nil

	case TypeLocalForwardResponse, TypeRemoteForwardResponse:
		if len(p) < 1 {
			return nil, malformed("%v without a status byte", t)
		}
		msg, err := decodeText(t, "message", p[1:])
		if err != nil {
			return nil, err
		}
		return ForwardResponse{Remote: t == TypeRemoteForwardResponse, Status: Status(p[0]), Message: msg}, nil

	case TypeLocalNewConnection, TypeRemoteNewConnection:
		if len(p) != 5 {
			return nil, malformed("%v payload of %d bytes, want 5", t, len(p))
		}
		proto, err := decodeProtocol(t, p[4])
		if err != nil {
			return nil, err
		}
		return NewConnection{Remote: t == TypeRemoteNewConnection, ConnID: binary.BigEndian.Uint32(p), Protocol: proto}, nil

	case TypeRemoteForwardRequest:
		if len(p) < 3 {
			return nil, malformed("%v payload of %d bytes, need at least 3", t, len(p))
		}
		m := RemoteForwardRequest{Port: binary.BigEndian.Uint16(p), Shared: p[2]&SharedFlag != 0}
		proto, err := decodeProtocol(t, p[2]&^SharedFlag)
		if err != nil {
			return nil, err
		}
		m.Protocol, p = proto, p[3:]
		if m.Shared {
			if len(p) < 8 {
				return nil, malformed("%v shares its port but has %d bytes for the 8-byte token", t, len(p))
			}
			m.Token, p = binary.BigEndian.Uint64(p), p[8:]
		}
		if m.LocalDestination, err = decodeText(t, "local destination", p); err != nil {
			return nil, err
		}
		return m, nil

	case TypeSessionClose:
		// The payload is reserved; ignore its contents for forward compatibility.
		return SessionClose{}, nil

	case TypeSessionMigrate:
		return SessionMigrate{}, nil // the payload is reserved, as for SessionClose

	case TypeConnectionClose:
		if len(p) != 5 {
			return nil, malformed("%v payload of %d bytes, want 5", t, len(p))
		}
		return ConnectionClose{ConnID: binary.BigEndian.Uint32(p), Reason: CloseReason(p[4])}, nil
	}
	return nil, malformed("unknown message type 0x%02x", uint8(t))
}

func decodeProtocol(t MsgType, b byte) (Protocol, error) {
	p := Protocol(b)
	if !p.valid() {
		return 0, malformed("%v with unknown protocol 0x%02x", t, b)
	}
	return p, nil
}

func decodeText(t MsgType, field string, b []byte) (string, error) {
	if !utf8.Valid(b) {
		return "", malformed("%v %s is not valid UTF-8", t, field)
	}
	return string(b), nil
}
