// Command rawquic is the benchmark ceiling for anything built on quic-go: a
// bare TCP-over-QUIC forwarder with quic-go's defaults, no authentication,
// no control messages, one stream per TCP connection and io.Copy both ways.
//
//	rawquic server -quic 127.0.0.1:4433 -dest 127.0.0.1:5201
//	rawquic client -quic 127.0.0.1:4433 -listen 127.0.0.1:6000
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"flag"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"os"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/qlog"
)

const alpn = "rawquic-bench"

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: rawquic server|client [flags]")
		os.Exit(2)
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	quicAddr := fs.String("quic", "127.0.0.1:4433", "QUIC address")
	dest := fs.String("dest", "", "server: TCP destination")
	listen := fs.String("listen", "", "client: TCP listen address")
	fs.Parse(os.Args[2:])
	// With QLOGDIR set, each connection writes a qlog file there (quic-go's
	// congestion window, RTT and loss events over time); without, nothing.
	cfg := &quic.Config{MaxIncomingStreams: 20000, KeepAlivePeriod: 5 * time.Second, Tracer: qlog.DefaultConnectionTracer}
	switch os.Args[1] {
	case "server":
		log.Fatal(server(*quicAddr, *dest, cfg))
	case "client":
		log.Fatal(client(*quicAddr, *listen, cfg))
	}
	os.Exit(2)
}

func server(addr, dest string, cfg *quic.Config) error {
	ln, err := quic.ListenAddr(addr, &tls.Config{Certificates: []tls.Certificate{selfSigned()}, NextProtos: []string{alpn}}, cfg)
	if err != nil {
		return err
	}
	for {
		conn, err := ln.Accept(context.Background())
		if err != nil {
			return err
		}
		go func() {
			for {
				st, err := conn.AcceptStream(context.Background())
				if err != nil {
					return
				}
				go func() {
					c, err := net.Dial("tcp", dest)
					if err != nil {
						st.CancelRead(1)
						st.CancelWrite(1)
						return
					}
					relay(c.(*net.TCPConn), st)
				}()
			}
		}()
	}
}

func client(addr, listen string, cfg *quic.Config) error {
	conn, err := quic.DialAddr(context.Background(), addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{alpn}}, cfg)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go func() {
			st, err := conn.OpenStreamSync(context.Background())
			if err != nil {
				c.Close()
				return
			}
			relay(c.(*net.TCPConn), st)
		}()
	}
}

func relay(c *net.TCPConn, st *quic.Stream) {
	done := make(chan struct{})
	go func() {
		io.Copy(st, c)
		st.Close()
		close(done)
	}()
	io.Copy(c, st)
	c.CloseWrite()
	<-done
	st.CancelRead(0)
	c.Close()
}

func selfSigned() tls.Certificate {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "rawquic"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour)}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}
