// Command udpfloor is the floor for a tunnel that carries TCP over UDP in
// Go: each TCP read becomes one sealed UDP datagram and each datagram one
// TCP write, with none of what QUIC does in between (acknowledgements,
// retransmission, congestion and flow control, streams). It runs the way
// quicport's tunnel ends run when quiet (one scheduler thread, the
// runtime's monitor kept awake: internal/procs), so an idle round trip
// through it shows what the Go runtime, the sockets and AES-GCM cost by
// themselves, and the rest of quicport's round trip is QUIC's work
// (docs/BENCHMARKS.md, "The floor: a UDP tunnel in Go without QUIC").
//
//	udpfloor exit  -udp 127.0.0.1:7601 -dest 127.0.0.1:7000
//	udpfloor entry -listen 127.0.0.1:7300 -udp 127.0.0.1:7601
//
// It is a measuring instrument, not a tunnel: a lost datagram is lost
// data, it carries one TCP connection at a time (a new one at the
// entrance replaces the last), and its AES-GCM key is fixed (it encrypts
// to cost what encryption costs, not to keep anything secret). Two
// switches add back a piece of quic-go's structure each:
//
//	-hops N   each message passes N more goroutines each way (quic-go's
//	          stream → connection loop → send queue, and socket reader →
//	          connection loop → stream reader, are 2)
//	-timer    a 25 ms timer is reset with every message, as quic-go's
//	          connection loop resets its own
package main

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/quicport/quicport/internal/procs"
)

// maxPayload keeps a datagram (header, payload, tag) inside a
// 1,280-byte IPv6 minimum MTU, as QUIC's packets are.
const maxPayload = 1200

// header is a datagram's first bytes: the connection's generation (the
// exit opens a new destination connection when it changes) and the
// sender's sequence number, which with the direction make the AEAD nonce.
const header = 1 + 8

type options struct {
	hops  int
	timer bool
}

func main() {
	if len(os.Args) < 2 || (os.Args[1] != "entry" && os.Args[1] != "exit") {
		fmt.Fprintln(os.Stderr, "usage: udpfloor entry -listen ADDR -udp EXIT_ADDR | udpfloor exit -udp ADDR -dest ADDR [-hops N] [-timer]")
		os.Exit(2)
	}
	_ = procs.KeepMonitorAwake() // returns only when it did not run the program again
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	listen := fs.String("listen", "", "entry: TCP address to accept connections on")
	udp := fs.String("udp", "", "entry: the exit's UDP address; exit: the UDP address to listen on")
	dest := fs.String("dest", "", "exit: TCP address to connect each connection to")
	var o options
	fs.IntVar(&o.hops, "hops", 0, "goroutine hand-offs each message makes in each direction")
	fs.BoolVar(&o.timer, "timer", false, "reset a 25 ms timer with every message")
	fs.Parse(os.Args[2:])
	switch {
	case *udp == "":
		log.Fatal("-udp is required: the exit's UDP address (entry), the address to listen on (exit)")
	case os.Args[1] == "entry" && *listen == "":
		log.Fatal("entry: -listen is required: the TCP address to accept connections on")
	case os.Args[1] == "exit" && *dest == "":
		log.Fatal("exit: -dest is required: the TCP address to connect each connection to")
	case o.hops < 0:
		log.Fatal("-hops must be 0 or more")
	}
	procs.Adapt(context.Background(), slog.New(slog.DiscardHandler))

	ua, err := net.ResolveUDPAddr("udp", *udp)
	if err != nil {
		log.Fatalf("-udp: %v", err)
	}
	switch os.Args[1] {
	case "entry":
		ln, err := net.Listen("tcp", *listen)
		if err != nil {
			log.Fatal(err)
		}
		u, err := net.DialUDP("udp", nil, ua)
		if err != nil {
			log.Fatal(err)
		}
		log.Fatal(runEntry(ln, u, o))
	case "exit":
		u, err := net.ListenUDP("udp", ua)
		if err != nil {
			log.Fatal(err)
		}
		log.Fatal(runExit(u, *dest, o))
	}
}

var key = make([]byte, 16) // fixed: see the package comment

// nonce is a datagram's AEAD nonce: the sender's direction, then the
// header (generation and sequence number), so that no two datagrams of
// one entrance's run share one.
func nonce(n []byte, dir byte, hdr []byte) []byte {
	n[2] = dir
	copy(n[3:], hdr)
	return n
}

// end is one side's state: its UDP socket and the TCP connection it
// relays now.
type end struct {
	o    options
	aead cipher.AEAD
	u    *net.UDPConn

	dir byte // in the nonces this end seals: 0 at the entrance, 1 at the exit

	mu   sync.Mutex
	gen  byte
	from netip.AddrPort // the exit's: where the generation's datagrams come from
	conn net.Conn

	timer *time.Timer // with -timer: reset with every message
}

func newEnd(u *net.UDPConn, dir byte, o options) *end {
	block, err := aes.NewCipher(key)
	if err != nil {
		panic(err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		panic(err)
	}
	e := &end{o: o, aead: aead, u: u, dir: dir}
	if o.timer {
		e.timer = time.AfterFunc(time.Hour, func() {})
	}
	return e
}

func (e *end) touch() {
	if e.timer != nil {
		e.timer.Reset(25 * time.Millisecond)
	}
}

// hops returns f behind n goroutines, each handing a copy of the message
// to the next through a channel, as quic-go's goroutines hand a message
// on, and the func that ends those goroutines.
func hops(n int, f func([]byte)) (send func([]byte), stop func()) {
	stop = func() {}
	for range n {
		in := make(chan []byte, 16)
		next, stopNext := f, stop
		go func() {
			for b := range in {
				next(b)
			}
			stopNext()
		}()
		f = func(b []byte) { in <- append([]byte(nil), b...) }
		stop = func() { close(in) }
	}
	return f, stop
}

// tcpToUDP seals what conn gives and sends it, one datagram per read,
// until conn ends: to peer (the exit's: where the entrance's datagrams
// came from), or on the connected socket when peer is the zero value.
func (e *end) tcpToUDP(conn net.Conn, gen byte, peer netip.AddrPort) {
	var seq uint64
	out := make([]byte, header+maxPayload+16)
	send, stop := hops(e.o.hops, func(b []byte) {
		if peer.IsValid() {
			e.u.WriteToUDPAddrPort(b, peer)
		} else {
			e.u.Write(b)
		}
	})
	defer stop()
	buf := make([]byte, maxPayload)
	nb := make([]byte, 12)
	for {
		n, err := conn.Read(buf)
		if err != nil {
			return
		}
		e.touch()
		seq++
		out[0] = gen
		binary.BigEndian.PutUint64(out[1:header], seq)
		sealed := e.aead.Seal(out[:header], nonce(nb, e.dir, out[:header]), buf[:n], out[:header])
		send(sealed)
	}
}

// udpToTCP opens each datagram and writes it to the connection of its
// generation; at the exit, newConn opens that connection when the
// generation or the entrance's address changes (a restarted entrance
// counts from 1 again; nil at the entrance, which drops what comes for a
// connection it has replaced).
func (e *end) udpToTCP(newConn func(gen byte, from netip.AddrPort) net.Conn) error {
	buf := make([]byte, 2048)
	plain := make([]byte, 0, 2048)
	nb := make([]byte, 12)
	write, stop := hops(e.o.hops, func(b []byte) {
		e.mu.Lock()
		c := e.conn
		e.mu.Unlock()
		if c != nil {
			c.Write(b)
		}
	})
	defer stop()
	for {
		n, from, err := e.u.ReadFromUDPAddrPort(buf)
		if err != nil {
			return err
		}
		if n < header+e.aead.Overhead() {
			continue
		}
		e.touch()
		p, err := e.aead.Open(plain[:0], nonce(nb, 1-e.dir, buf[:header]), buf[header:n], buf[:header])
		if err != nil {
			continue // not ours, or damaged: a measuring tool drops it
		}
		e.mu.Lock()
		stale := e.conn == nil || e.gen != buf[0] || (newConn != nil && e.from != from)
		e.mu.Unlock()
		switch {
		case stale && newConn == nil:
			continue // the entrance: for a connection it has closed
		case stale && newConn(buf[0], from) == nil:
			continue
		}
		write(p)
	}
}

// replace makes conn the connection of generation gen, whose datagrams
// come from from, and closes the one before it (nil: closes it and relays
// nothing more).
func (e *end) replace(gen byte, from netip.AddrPort, conn net.Conn) {
	e.mu.Lock()
	old := e.conn
	e.gen, e.from, e.conn = gen, from, conn
	e.mu.Unlock()
	if old != nil {
		old.Close()
	}
}

// runEntry accepts connections on ln, one at a time, and relays each
// through u, which is connected to the exit.
func runEntry(ln net.Listener, u *net.UDPConn, o options) error {
	e := newEnd(u, 0, o)
	defer e.replace(0, netip.AddrPort{}, nil)
	go e.udpToTCP(nil)
	var gen byte
	for {
		conn, err := ln.Accept()
		if err != nil {
			return err
		}
		gen++
		e.replace(gen, netip.AddrPort{}, conn)
		go e.tcpToUDP(conn, gen, netip.AddrPort{})
	}
}

// runExit relays the datagrams that arrive on u to a connection to dest,
// a new one for each generation the entrance starts.
func runExit(u *net.UDPConn, dest string, o options) error {
	e := newEnd(u, 1, o)
	defer e.replace(0, netip.AddrPort{}, nil)
	return e.udpToTCP(func(gen byte, from netip.AddrPort) net.Conn {
		conn, err := net.Dial("tcp", dest)
		if err != nil {
			log.Printf("dial %s: %v", dest, err)
			return nil
		}
		e.replace(gen, from, conn)
		go e.tcpToUDP(conn, gen, from)
		return conn
	})
}
