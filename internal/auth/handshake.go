package auth

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"
)

// Method is an authentication method.
type Method int

// Authentication methods.
const (
	MethodPSK Method = iota + 1
	MethodX25519
	MethodMTLS
)

func (m Method) String() string {
	switch m {
	case MethodPSK:
		return "psk"
	case MethodX25519:
		return "x25519"
	case MethodMTLS:
		return "mtls"
	}
	return "unknown"
}

// Domain-separation labels; each MAC in the handshake has its own.
const (
	exporterLabel     = "EXPORTER-quicport-auth-v1"
	labelPSKClient    = "quicport psk client v1"
	labelPSKServer    = "quicport psk server v1"
	labelPSKFinish    = "quicport psk finish v1"
	labelX25519Server = "quicport x25519 server v1"
	labelX25519Client = "quicport x25519 client v1"
)

// BindingSize is the length of the TLS channel-binding value.
const BindingSize = 32

// DefaultTimestampWindow is how far a PSK client's clock may be from the
// server's.
const DefaultTimestampWindow = 30 * time.Second

// Binding returns the channel-binding value of a TLS session: a TLS exporter
// (RFC 5705/8446) that both ends of one TLS session compute alike and that
// differs for every other session, so MACs over it cannot be relayed into a
// second TLS session by a man in the middle.
func Binding(cs tls.ConnectionState) ([]byte, error) {
	b, err := cs.ExportKeyingMaterial(exporterLabel, nil, BindingSize)
	if err != nil {
		return nil, fmt.Errorf("tls exporter: %w", err)
	}
	return b, nil
}

// RejectedError says that one side refused the other's authentication.
// It is permanent: retrying with the same credentials cannot succeed.
type RejectedError struct {
	// ByServer is true when the server refused the client, false when the
	// client refused the server.
	ByServer bool
	Reason   string
}

func (e *RejectedError) Error() string {
	if e.ByServer {
		return "server rejected authentication: " + e.Reason
	}
	return "server failed authentication: " + e.Reason
}

// ServerConfig is the server's authentication policy. Exactly one of PSK and
// PrivateKey is set.
type ServerConfig struct {
	// PSK selects PSK authentication.
	PSK PSK
	// PrivateKey and AuthorizedKeys select X25519 authentication.
	PrivateKey     PrivateKey
	AuthorizedKeys []AuthorizedKey
	// MTLS says that TLS requires and verifies client certificates. Alone
	// (no PSK, no key) it is the method; with one of them, both apply.
	MTLS bool
	// Window bounds the clock difference of PSK clients (0 means 30 s).
	Window time.Duration
	// Now returns the current time (nil means time.Now).
	Now func() time.Time
}

// ClientConfig holds the client's credentials. Exactly one of PSK and
// PrivateKey is set; with PrivateKey, ServerKey is the pinned server key.
type ClientConfig struct {
	// MTLS, without PSK or PrivateKey, authenticates with the client
	// certificate presented in the TLS handshake alone.
	MTLS       bool
	PSK        PSK
	PrivateKey PrivateKey
	ServerKey  PublicKey
	Now        func() time.Time
}

// Peer describes an authenticated client.
type Peer struct {
	Method  Method
	Key     PublicKey // the client's key (X25519 only)
	Comment string    // the authorized-keys comment (X25519 only)
	Subject string    // the client certificate's subject (mTLS; set by the caller)
}

// Identity names the client for per-client limits: its key (X25519), or
// "" when the method does not identify clients (PSK).
func (p Peer) Identity() string {
	switch {
	case p.Method == MethodX25519:
		return "x25519:" + p.Key.String()
	case p.Subject != "":
		return "cert:" + p.Subject
	}
	return ""
}

// Method returns the method the policy uses.
func (c ServerConfig) Method() Method {
	switch {
	case c.PSK != nil:
		return MethodPSK
	case !c.PrivateKey.IsZero():
		return MethodX25519
	case c.MTLS:
		return MethodMTLS
	}
	return 0
}

func (c ServerConfig) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

func (c ClientConfig) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

func mac(key []byte, label string, parts ...[]byte) [macSize]byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(label))
	for _, p := range parts {
		h.Write(p)
	}
	var out [macSize]byte
	h.Sum(out[:0])
	return out
}

func randomChallenge() (c [challengeSize]byte) {
	rand.Read(c[:]) // crypto/rand.Read never fails
	return c
}

// Reject tells a client, before its handshake is read, why it is refused
// (for example because its TLS certificate is not accepted), and returns
// the matching *RejectedError.
func Reject(w io.Writer, reason string) error { return reject(w, reason) }

// reject tells the client why it was refused and returns the matching error.
func reject(rw io.Writer, reason string) error {
	_ = writeStatus(rw, statusRejected, reason)
	return &RejectedError{ByServer: true, Reason: reason}
}

// Server runs the server side of the handshake on rw, the session's first
// stream. binding is the session's channel-binding value. The caller bounds
// the handshake with a deadline on rw. A *RejectedError means the client was
// refused (and was told why); other errors are I/O or protocol errors.
func Server(rw io.ReadWriter, binding []byte, cfg ServerConfig) (Peer, error) {
	var magic [len(x25519Magic)]byte
	if _, err := io.ReadFull(rw, magic[:len(pskMagic)]); err != nil {
		return Peer{}, fmt.Errorf("read hello: %w", err)
	}
	if string(magic[:len(pskMagic)]) == pskMagic {
		if cfg.Method() != MethodPSK {
			// Read the whole hello first so the client is not blocked writing it.
			_, _ = io.CopyN(io.Discard, rw, int64(pskHelloSize-len(pskMagic)))
			return Peer{}, reject(rw, fmt.Sprintf("server requires %v authentication, client offered a PSK", cfg.Method()))
		}
		return serverPSK(rw, binding, cfg)
	}
	if _, err := io.ReadFull(rw, magic[len(pskMagic):]); err != nil {
		return Peer{}, fmt.Errorf("read hello: %w", err)
	}
	switch string(magic[:]) {
	case mtlsMagic:
		if cfg.Method() != MethodMTLS {
			return Peer{}, reject(rw, fmt.Sprintf("server requires %v authentication on top of the certificate; add --psk-file or --privkey-file", cfg.Method()))
		}
		if err := writeStatus(rw, statusOK, ""); err != nil {
			return Peer{}, err
		}
		return Peer{Method: MethodMTLS}, nil
	case x25519Magic:
	default:
		return Peer{}, fmt.Errorf("%w: not a quicport client (unknown hello)", errMalformed)
	}
	if cfg.Method() != MethodX25519 {
		_, _ = io.CopyN(io.Discard, rw, int64(x25519HelloSize-len(x25519Magic)))
		return Peer{}, reject(rw, fmt.Sprintf("server requires %v authentication, client offered an X25519 key", cfg.Method()))
	}
	return serverX25519(rw, binding, cfg)
}

func serverPSK(rw io.ReadWriter, binding []byte, cfg ServerConfig) (Peer, error) {
	buf := make([]byte, pskHelloSize-len(pskMagic))
	if _, err := io.ReadFull(rw, buf); err != nil {
		return Peer{}, fmt.Errorf("read PSK hello: %w", err)
	}
	hello, _ := parsePSKHello(buf) // the size is right by construction
	var ts [8]byte
	binary.BigEndian.PutUint64(ts[:], hello.Timestamp)
	want := mac(cfg.PSK, labelPSKClient, binding, ts[:], hello.Ephemeral[:])
	if !hmac.Equal(want[:], hello.MAC[:]) {
		return Peer{}, reject(rw, "the client's PSK does not match the server's")
	}
	window := cfg.Window
	if window == 0 {
		window = DefaultTimestampWindow
	}
	skew := cfg.now().Sub(time.Unix(int64(hello.Timestamp), 0))
	if hello.Timestamp > 1<<62 || skew > window || skew < -window {
		return Peer{}, reject(rw, fmt.Sprintf("client clock is %v away from the server's, more than the %v allowed; synchronise both clocks (NTP)", skew.Round(time.Second), window))
	}

	eph, err := GenerateKey()
	if err != nil {
		return Peer{}, err
	}
	reply := pskServer{Ephemeral: eph.Public(), Challenge: randomChallenge()}
	reply.MAC = mac(cfg.PSK, labelPSKServer, binding, reply.Challenge[:], reply.Ephemeral[:], hello.Ephemeral[:])
	if err := writeOK(rw, reply.marshal()); err != nil {
		return Peer{}, err
	}

	var finish [macSize]byte
	if _, err := io.ReadFull(rw, finish[:]); err != nil {
		return Peer{}, fmt.Errorf("read PSK finish: %w", err)
	}
	shared, err := eph.dh(hello.Ephemeral)
	if err != nil {
		return Peer{}, reject(rw, "client ephemeral key is invalid")
	}
	want = mac(shared, labelPSKFinish, binding, reply.Challenge[:])
	if !hmac.Equal(want[:], finish[:]) {
		return Peer{}, reject(rw, "client key-exchange proof is invalid")
	}
	if err := writeStatus(rw, statusOK, ""); err != nil {
		return Peer{}, err
	}
	return Peer{Method: MethodPSK}, nil
}

func serverX25519(rw io.ReadWriter, binding []byte, cfg ServerConfig) (Peer, error) {
	buf := make([]byte, x25519HelloSize-len(x25519Magic))
	if _, err := io.ReadFull(rw, buf); err != nil {
		return Peer{}, fmt.Errorf("read X25519 hello: %w", err)
	}
	hello, _ := parseX25519Hello(buf)
	var peer Peer
	found := false
	for _, ak := range cfg.AuthorizedKeys {
		if subtle.ConstantTimeCompare(ak.Key[:], hello.Static[:]) == 1 {
			peer, found = Peer{Method: MethodX25519, Key: ak.Key, Comment: ak.Comment}, true
		}
	}
	if !found {
		return Peer{}, reject(rw, fmt.Sprintf("client public key %s is not authorized; add it to the server's --client-pubkeys or --client-pubkeys-file", hello.Static))
	}

	eph, err := GenerateKey()
	if err != nil {
		return Peer{}, err
	}
	static, err := cfg.PrivateKey.dh(hello.Static)
	if err != nil {
		return Peer{}, reject(rw, "client public key is invalid (low order)")
	}
	reply := x25519Server{Static: cfg.PrivateKey.Public(), Ephemeral: eph.Public(), Challenge: randomChallenge()}
	reply.MAC = mac(static, labelX25519Server, binding, hello.Challenge[:], reply.Ephemeral[:], reply.Challenge[:], hello.Static[:])
	if err := writeOK(rw, reply.marshal()); err != nil {
		return Peer{}, err
	}

	var finish [macSize]byte
	if _, err := io.ReadFull(rw, finish[:]); err != nil {
		return Peer{}, fmt.Errorf("read X25519 finish: %w", err)
	}
	shared, err := eph.dh(hello.Static)
	if err != nil {
		return Peer{}, reject(rw, "client public key is invalid (low order)")
	}
	want := mac(shared, labelX25519Client, binding, reply.Challenge[:], hello.Challenge[:], hello.Static[:])
	if !hmac.Equal(want[:], finish[:]) {
		return Peer{}, reject(rw, "client could not prove it holds the private key for "+hello.Static.String())
	}
	if err := writeStatus(rw, statusOK, ""); err != nil {
		return Peer{}, err
	}
	return peer, nil
}

// writeOK writes an OK status followed by body in one write.
func writeOK(w io.Writer, body []byte) error {
	b := append([]byte{statusOK, 0}, body...)
	_, err := w.Write(b)
	return err
}

// Client runs the client side of the handshake on rw. A *RejectedError
// means one side refused the other; retrying cannot help.
func Client(rw io.ReadWriter, binding []byte, cfg ClientConfig) error {
	if cfg.PSK != nil {
		return clientPSK(rw, binding, cfg)
	}
	if !cfg.PrivateKey.IsZero() {
		return clientX25519(rw, binding, cfg)
	}
	if cfg.MTLS {
		if _, err := rw.Write([]byte(mtlsMagic)); err != nil {
			return fmt.Errorf("send mTLS hello: %w", err)
		}
		return expectOK(rw)
	}
	return errors.New("no credentials: set a PSK, a private key or a client certificate")
}

// expectOK reads a server status and turns a rejection into an error.
func expectOK(r io.Reader) error {
	status, reason, err := readStatus(r)
	if err != nil {
		return fmt.Errorf("read server status: %w", err)
	}
	if status != statusOK {
		return &RejectedError{ByServer: true, Reason: reason}
	}
	return nil
}

func clientPSK(rw io.ReadWriter, binding []byte, cfg ClientConfig) error {
	eph, err := GenerateKey()
	if err != nil {
		return err
	}
	hello := pskHello{Timestamp: uint64(cfg.now().Unix()), Ephemeral: eph.Public()}
	var ts [8]byte
	binary.BigEndian.PutUint64(ts[:], hello.Timestamp)
	hello.MAC = mac(cfg.PSK, labelPSKClient, binding, ts[:], hello.Ephemeral[:])
	if _, err := rw.Write(hello.marshal()); err != nil {
		return fmt.Errorf("send PSK hello: %w", err)
	}
	if err := expectOK(rw); err != nil {
		return err
	}
	buf := make([]byte, pskServerSize)
	if _, err := io.ReadFull(rw, buf); err != nil {
		return fmt.Errorf("read PSK reply: %w", err)
	}
	reply, _ := parsePSKServer(buf)
	want := mac(cfg.PSK, labelPSKServer, binding, reply.Challenge[:], reply.Ephemeral[:], hello.Ephemeral[:])
	if !hmac.Equal(want[:], reply.MAC[:]) {
		return &RejectedError{Reason: "the server's proof of the PSK is invalid for this TLS session: a man in the middle, or a server with another PSK"}
	}
	shared, err := eph.dh(reply.Ephemeral)
	if err != nil {
		return &RejectedError{Reason: "server ephemeral key is invalid"}
	}
	finish := mac(shared, labelPSKFinish, binding, reply.Challenge[:])
	if _, err := rw.Write(finish[:]); err != nil {
		return fmt.Errorf("send PSK finish: %w", err)
	}
	return expectOK(rw)
}

func clientX25519(rw io.ReadWriter, binding []byte, cfg ClientConfig) error {
	hello := x25519Hello{Static: cfg.PrivateKey.Public(), Challenge: randomChallenge()}
	if _, err := rw.Write(hello.marshal()); err != nil {
		return fmt.Errorf("send X25519 hello: %w", err)
	}
	if err := expectOK(rw); err != nil {
		return err
	}
	buf := make([]byte, x25519ServerLen)
	if _, err := io.ReadFull(rw, buf); err != nil {
		return fmt.Errorf("read X25519 reply: %w", err)
	}
	reply, _ := parseX25519Server(buf)
	if subtle.ConstantTimeCompare(reply.Static[:], cfg.ServerKey[:]) != 1 {
		return &RejectedError{Reason: fmt.Sprintf("server presented public key %s, but --server-pubkey is %s: wrong server or a man in the middle", reply.Static, cfg.ServerKey)}
	}
	static, err := cfg.PrivateKey.dh(reply.Static)
	if err != nil {
		return &RejectedError{Reason: "server public key is invalid (low order)"}
	}
	want := mac(static, labelX25519Server, binding, hello.Challenge[:], reply.Ephemeral[:], reply.Challenge[:], hello.Static[:])
	if !hmac.Equal(want[:], reply.MAC[:]) {
		return &RejectedError{Reason: fmt.Sprintf("server could not prove it holds the private key for %s in this TLS session: a man in the middle", cfg.ServerKey)}
	}
	shared, err := cfg.PrivateKey.dh(reply.Ephemeral)
	if err != nil {
		return &RejectedError{Reason: "server ephemeral key is invalid"}
	}
	finish := mac(shared, labelX25519Client, binding, reply.Challenge[:], hello.Challenge[:], hello.Static[:])
	if _, err := rw.Write(finish[:]); err != nil {
		return fmt.Errorf("send X25519 finish: %w", err)
	}
	return expectOK(rw)
}
