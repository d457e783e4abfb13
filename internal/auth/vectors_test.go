package auth

import (
	"encoding/binary"
	"encoding/hex"
	"testing"
)

// The handshake vectors printed in docs/PROTOCOL.md; keep them equal.
func TestHandshakeVectors(t *testing.T) {
	seq := func(start byte) []byte {
		b := make([]byte, 32)
		for i := range b {
			b[i] = start + byte(i)
		}
		return b
	}
	binding := seq(0xa0)
	psk := []byte("quicport-test-psk")
	clientEph, _ := ParsePrivateKey("AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=") // bytes 01..20
	serverEph, _ := ParsePrivateKey("ISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+P0A=") // bytes 21..40
	challenge := seq(0x41)
	var ts [8]byte
	binary.BigEndian.PutUint64(ts[:], 1700000000)
	ce, se := clientEph.Public(), serverEph.Public()

	hello := pskHello{Timestamp: 1700000000, Ephemeral: ce, MAC: mac(psk, labelPSKClient, binding, ts[:], ce[:])}
	shared, err := serverEph.dh(ce)
	if err != nil {
		t.Fatal(err)
	}
	serverStatic, _ := ParsePrivateKey("YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXp7fH1+f4A=") // bytes 61..80
	clientStatic, _ := ParsePrivateKey("gYKDhIWGh4iJiouMjY6PkJGSk5SVlpeYmZqbnJ2en6A=") // bytes 81..a0
	cs, ss := clientStatic.Public(), serverStatic.Public()
	clientChallenge := seq(0xc1)
	static, _ := serverStatic.dh(cs)
	ephStatic, _ := serverEph.dh(cs)
	got := map[string]string{
		"x25519 client static public": hex.EncodeToString(cs[:]),
		"x25519 server static public": hex.EncodeToString(ss[:]),
		"x25519 static shared":        hex.EncodeToString(static),
		"x25519 server mac":           hexMAC(mac(static, labelX25519Server, binding, clientChallenge, se[:], challenge, cs[:])),
		"x25519 eph-static shared":    hex.EncodeToString(ephStatic),
		"x25519 client finish":        hexMAC(mac(ephStatic, labelX25519Client, binding, challenge, clientChallenge, cs[:])),
		"client ephemeral public":     hex.EncodeToString(ce[:]),
		"server ephemeral public":     hex.EncodeToString(se[:]),
		"psk hello":                   hex.EncodeToString(hello.marshal()),
		"psk server mac":              hexMAC(mac(psk, labelPSKServer, binding, challenge, se[:], ce[:])),
		"dh shared":                   hex.EncodeToString(shared),
		"psk finish":                  hexMAC(mac(shared, labelPSKFinish, binding, challenge)),
	}
	want := map[string]string{
		"client ephemeral public":     "07a37cbc142093c8b755dc1b10e86cb426374ad16aa853ed0bdfc0b2b86d1c7c",
		"dh shared":                   "a84dc7c3c8f058b1b2dc4cd1e9b5dc0a7987f88b6a9564cde3391fc421159e77",
		"psk finish":                  "e23e1d2ac7c0bbfe47a5beb336fda459025e0c64a6996ddaf0d83e1920005cb5",
		"psk hello":                   "51554943504f52545f50534b000000006553f10007a37cbc142093c8b755dc1b10e86cb426374ad16aa853ed0bdfc0b2b86d1c7cac2c0fd4cbf3343ebc55fce9ffdaed085469e41f7e2d08083c68aa76c41eae0c",
		"psk server mac":              "a14fb640390202baf6b2c4f4ec3dbc5caf9f06f1dfc910d8e465cfa7a0d96b09",
		"server ephemeral public":     "5869aff450549732cbaaed5e5df9b30a6da31cb0e5742bad5ad4a1a768f1a67b",
		"x25519 client finish":        "4dd4ffd8c2b9b6c99e2a8a5952749e3fdcfa491149248c91b4e2135158eee3b1",
		"x25519 client static public": "883186b800b41d5cf0429695da9b3cc4f328ebcd184a6e482fa578c103f06c77",
		"x25519 eph-static shared":    "e9f4479ab6d9665ef4a4cb22856a439921c5f1d8676fd87b2df8c0bdd618cf2a",
		"x25519 server mac":           "93ea9d12ff6e98ea9d23b050e3c809e62b2cccdd167750308a8854a41cba379b",
		"x25519 server static public": "244fe3b963e899dd295baffce248d3530f3a9a7479ba063002680ebfe7adad49",
		"x25519 static shared":        "dbcc0f8cb8de72509d228b2c6d0bdbd383180949491cda1cdde85fd048cf762d",
	}
	for k, v := range got {
		if want[k] != v {
			t.Errorf("%s = %s, want %s", k, v, want[k])
		}
	}
}

func hexMAC(m [macSize]byte) string { return hex.EncodeToString(m[:]) }
