package server

import (
	"crypto/hkdf"
	"crypto/sha256"
	"crypto/x509"

	"github.com/quic-go/quic-go"
)

// statelessResetKey derives the key of the server's QUIC stateless resets
// from its TLS private key, or returns nil (no resets) when cfg turns them
// off or the key cannot be exported.
//
// A stateless reset is how a QUIC server tells a client that it has no
// state for the connection the client's packet names: after a crash or a
// reboot. Without one the client learns only at its idle timeout. (quic-go
// answers only packets longer than its 42-byte reset, so an idle client's
// keep-alives get none; its next data does.) The token in the reset must be the one the
// server handed out with the connection ID, so the key must outlive the
// process: deriving it from the identity, which is persisted, gives every
// run of the server and all of its data planes the same key with no new
// secret to store. A data plane never resets another's live connections:
// steering sends each packet to the data plane that issued its connection
// ID, and only an ID no running data plane issued reaches one that does
// not know it. Data planes without steering send no resets
// (NoStatelessResets): while two of them read the one shared socket, a
// connection's packets go to either.
func statelessResetKey(cfg Config) *quic.StatelessResetKey {
	if cfg.NoStatelessResets {
		return nil
	}
	der, err := x509.MarshalPKCS8PrivateKey(cfg.Certificate.PrivateKey)
	if err != nil {
		return nil
	}
	key, err := hkdf.Key(sha256.New, der, nil, "quicport stateless reset key", len(quic.StatelessResetKey{}))
	if err != nil {
		return nil
	}
	return (*quic.StatelessResetKey)(key)
}
