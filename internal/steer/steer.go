// Package steer lets several data planes share one UDP port without taking
// each other's packets. Every data plane has its own SO_REUSEPORT socket on
// the port; an sk_reuseport BPF program reads the QUIC destination
// connection ID of each datagram and hands it to the socket of the data plane
// that issued that ID. Datagrams that carry no ID of ours — a client's first
// Initial, whose ID the client chose at random — go to the current data
// plane, so new connections reach the newest one while established ones
// stay where they are.
//
// Connection IDs are CIDLen bytes: the data plane's id, a 3-byte salt shared
// by the server's data planes, then random bytes. The salt keeps a client's
// random ID from being taken for ours (a 1 in 2^24 chance per connection);
// like QUIC-LB's plaintext mode it shows an observer which server instance a
// connection belongs to, never which connection.
package steer

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/quic-go/quic-go"
	"golang.org/x/sys/unix"
)

// CIDLen is the length of the connection IDs data planes issue.
const CIDLen = 16

// MaxID is the largest data plane id; ids run from 1 to MaxID.
const MaxID = 255

// Salt marks connection IDs as issued by one server's data planes.
type Salt [3]byte

// MarshalText encodes the salt in hex, for the control plane's messages.
func (s Salt) MarshalText() ([]byte, error) { return []byte(hex.EncodeToString(s[:])), nil }

// UnmarshalText decodes a hex salt of exactly len(Salt) bytes.
func (s *Salt) UnmarshalText(b []byte) error {
	raw, err := hex.DecodeString(string(b))
	if err != nil || len(raw) != len(s) {
		return fmt.Errorf("steering salt %q: want %d bytes in hex", b, len(s))
	}
	copy(s[:], raw)
	return nil
}

// NewSalt returns a random salt.
func NewSalt() Salt {
	var s Salt
	_, _ = rand.Read(s[:])
	return s
}

// CIDGenerator issues connection IDs that carry a data plane's id. It
// implements quic.ConnectionIDGenerator.
type CIDGenerator struct {
	ID   uint8
	Salt Salt
}

// GenerateConnectionID returns id, salt, then random bytes.
func (g CIDGenerator) GenerateConnectionID() (quic.ConnectionID, error) {
	var b [CIDLen]byte
	b[0] = g.ID
	copy(b[1:4], g.Salt[:])
	if _, err := rand.Read(b[4:]); err != nil {
		return quic.ConnectionID{}, err
	}
	return quic.ConnectionIDFromBytes(b[:]), nil
}

// ConnectionIDLen returns CIDLen.
func (g CIDGenerator) ConnectionIDLen() int { return CIDLen }

// Steering is the BPF program and its maps. The program is attached to every
// socket Listen creates, which puts it on their SO_REUSEPORT group.
type Steering struct {
	salt    Salt
	prog    *ebpf.Program
	sockets *ebpf.Map // REUSEPORT_SOCKARRAY: data plane id -> its socket
	current *ebpf.Map // ARRAY[1]: the id new connections go to
}

// ErrUnsupported wraps every reason the program cannot be loaded.
var ErrUnsupported = errors.New("BPF socket steering is not available")

// New loads the steering program for connection IDs with salt. It fails with
// an error wrapping ErrUnsupported where BPF cannot be loaded (no CAP_BPF and
// CAP_NET_ADMIN, or a kernel without sk_reuseport programs).
func New(salt Salt) (*Steering, error) {
	sockets, err := ebpf.NewMap(&ebpf.MapSpec{Name: "quicport_socks", Type: ebpf.ReusePortSockArray, KeySize: 4, ValueSize: 8, MaxEntries: MaxID + 1})
	if err != nil {
		return nil, fmt.Errorf("%w: socket map: %v", ErrUnsupported, err)
	}
	current, err := ebpf.NewMap(&ebpf.MapSpec{Name: "quicport_cur", Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: 1})
	if err != nil {
		sockets.Close()
		return nil, fmt.Errorf("%w: config map: %v", ErrUnsupported, err)
	}
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:         "quicport_steer",
		Type:         ebpf.SkReuseport,
		AttachType:   ebpf.AttachSkReuseportSelect,
		License:      "Dual MIT/GPL",
		Instructions: program(sockets.FD(), current.FD(), salt),
	})
	if err != nil {
		sockets.Close()
		current.Close()
		return nil, fmt.Errorf("%w: load program: %v", ErrUnsupported, err)
	}
	return &Steering{salt: salt, prog: prog, sockets: sockets, current: current}, nil
}

// Files returns duplicates of the program's and maps' descriptors, in the
// order Open takes them: to hand to data planes, which keep them so that a
// restarted control plane can take over the same program and maps.
func (s *Steering) Files() ([]*os.File, error) {
	return dup(s.prog.FD(), s.sockets.FD(), s.current.FD())
}

// DupFiles duplicates steering descriptors (from Files) so that they can be
// handed on while the caller keeps its own.
func DupFiles(files []*os.File) ([]*os.File, error) {
	fds := make([]int, len(files))
	for i, f := range files {
		fds[i] = int(f.Fd())
	}
	return dup(fds...)
}

// dup duplicates fds (close-on-exec) as files; all or none.
func dup(fds ...int) ([]*os.File, error) {
	var out []*os.File
	for _, fd := range fds {
		d, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			for _, f := range out {
				f.Close()
			}
			return nil, err
		}
		out = append(out, os.NewFile(uintptr(d), "steering"))
	}
	return out, nil
}

// Open takes over the program and maps that files (from Files) refer to:
// the sockets in the map and the attached program stay as they are. The
// caller still owns files.
func Open(files []*os.File, salt Salt) (*Steering, error) {
	if len(files) != 3 {
		return nil, fmt.Errorf("want 3 steering descriptors, got %d", len(files))
	}
	prog, err := openDup(files[0], ebpf.NewProgramFromFD)
	if err != nil {
		return nil, fmt.Errorf("steering program: %w", err)
	}
	sockets, err := openDup(files[1], ebpf.NewMapFromFD)
	if err != nil {
		prog.Close()
		return nil, fmt.Errorf("steering socket map: %w", err)
	}
	current, err := openDup(files[2], ebpf.NewMapFromFD)
	if err != nil {
		prog.Close()
		sockets.Close()
		return nil, fmt.Errorf("steering map: %w", err)
	}
	return &Steering{salt: salt, prog: prog, sockets: sockets, current: current}, nil
}

// openDup hands a duplicate of f's descriptor to open (a cilium/ebpf
// NewXFromFD), which owns it from then on and closes it if it fails; f
// stays the caller's.
func openDup[T any](f *os.File, open func(int) (T, error)) (T, error) {
	d, err := unix.Dup(int(f.Fd()))
	if err != nil {
		var zero T
		return zero, err
	}
	return open(d)
}

// Salt returns the salt the program recognizes.
func (s *Steering) Salt() Salt { return s.salt }

// program is the sk_reuseport program. In C it would read:
//
//	cur = current[0]
//	load the first 10 bytes of the UDP payload, else goto fallback
//	if long header: dcid = payload[6:] if payload[5] == CIDLen, else goto fallback
//	else:           dcid = payload[1:]
//	if dcid[1:4] == salt && select(sockets, dcid[0]) succeeds: return SK_PASS
//	fallback: select(sockets, cur); return SK_PASS
//
// When no socket can be selected the kernel falls back to its own hash.
func program(sockets, current int, salt Salt) asm.Instructions {
	const (
		skPass  = 1
		payload = -24 // 10 bytes of the UDP payload on the stack
		keyOff  = -8
	)
	sel := func(key asm.Register) asm.Instructions {
		return asm.Instructions{
			asm.StoreMem(asm.RFP, keyOff, key, asm.Word),
			asm.Mov.Reg(asm.R1, asm.R6),
			asm.LoadMapPtr(asm.R2, sockets),
			asm.Mov.Reg(asm.R3, asm.RFP),
			asm.Add.Imm(asm.R3, keyOff),
			asm.Mov.Imm(asm.R4, 0),
			asm.FnSkSelectReuseport.Call(),
		}
	}
	var p asm.Instructions
	p = append(p,
		asm.Mov.Reg(asm.R6, asm.R1), // ctx
		asm.StoreImm(asm.RFP, keyOff, 0, asm.Word),
		asm.LoadMapPtr(asm.R1, current),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, keyOff),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "pass"),
		asm.LoadMem(asm.R7, asm.R0, 0, asm.Word), // r7 = current id
		// The payload starts after the 8-byte UDP header.
		asm.Mov.Reg(asm.R1, asm.R6),
		asm.Mov.Imm(asm.R2, 8),
		asm.Mov.Reg(asm.R3, asm.RFP),
		asm.Add.Imm(asm.R3, payload),
		asm.Mov.Imm(asm.R4, 10),
		asm.FnSkbLoadBytes.Call(),
		asm.JNE.Imm(asm.R0, 0, "fallback"),
		asm.LoadMem(asm.R1, asm.RFP, payload, asm.Byte),
		asm.JSet.Imm(asm.R1, 0x80, "long"),
		// Short header: the DCID follows the first byte.
		asm.LoadMem(asm.R8, asm.RFP, payload+1, asm.Byte),
		asm.LoadMem(asm.R2, asm.RFP, payload+2, asm.Byte),
		asm.LoadMem(asm.R3, asm.RFP, payload+3, asm.Byte),
		asm.LoadMem(asm.R4, asm.RFP, payload+4, asm.Byte),
		asm.Ja.Label("check"),
		// Long header: flags, version (4), DCID length, DCID.
		asm.LoadMem(asm.R1, asm.RFP, payload+5, asm.Byte).WithSymbol("long"),
		asm.JNE.Imm(asm.R1, CIDLen, "fallback"),
		asm.LoadMem(asm.R8, asm.RFP, payload+6, asm.Byte),
		asm.LoadMem(asm.R2, asm.RFP, payload+7, asm.Byte),
		asm.LoadMem(asm.R3, asm.RFP, payload+8, asm.Byte),
		asm.LoadMem(asm.R4, asm.RFP, payload+9, asm.Byte),
		asm.JNE.Imm(asm.R2, int32(salt[0]), "fallback").WithSymbol("check"),
		asm.JNE.Imm(asm.R3, int32(salt[1]), "fallback"),
		asm.JNE.Imm(asm.R4, int32(salt[2]), "fallback"),
	)
	p = append(p, sel(asm.R8)...)
	p = append(p, asm.JEq.Imm(asm.R0, 0, "pass"))
	fallback := sel(asm.R7)
	fallback[0] = fallback[0].WithSymbol("fallback")
	p = append(p, fallback...)
	p = append(p,
		asm.Mov.Imm(asm.R0, skPass).WithSymbol("pass"),
		asm.Return(),
	)
	return p
}

// Listen opens data plane id's SO_REUSEPORT socket on addr, attaches the
// program to the port's group and maps id to the socket.
func (s *Steering) Listen(addr string, id uint8) (*net.UDPConn, error) {
	pc, err := ListenReusePort(addr)
	if err != nil {
		return nil, err
	}
	if err := s.Add(pc, id); err != nil {
		pc.Close()
		return nil, err
	}
	return pc, nil
}

// Add attaches the program to conn's SO_REUSEPORT group and maps id to conn:
// for sockets Listen opened, or that a data plane handed back to a new
// control plane.
func (s *Steering) Add(conn syscall.Conn, id uint8) error {
	rc, err := conn.SyscallConn()
	if err != nil {
		return err
	}
	var opErr error
	err = rc.Control(func(fd uintptr) {
		if opErr = attach(int(fd), s.prog.FD()); opErr != nil {
			opErr = fmt.Errorf("attach steering program: %w", opErr)
			return
		}
		if opErr = s.sockets.Update(uint32(id), uint64(fd), ebpf.UpdateAny); opErr != nil {
			opErr = fmt.Errorf("map data plane %d to its socket: %w", id, opErr)
		}
	})
	if err != nil {
		return err
	}
	return opErr
}

// SetCurrent sends new connections to data plane id.
func (s *Steering) SetCurrent(id uint8) error {
	return s.current.Update(uint32(0), uint32(id), ebpf.UpdateAny)
}

// Close releases the program and maps. Sockets keep the program attached
// until they close.
func (s *Steering) Close() error {
	return errors.Join(s.prog.Close(), s.sockets.Close(), s.current.Close())
}

// ListenReusePort opens a UDP socket on addr with SO_REUSEPORT set.
func ListenReusePort(addr string) (*net.UDPConn, error) {
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var opErr error
		err := rc.Control(func(fd uintptr) {
			opErr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		})
		if err != nil {
			return err
		}
		return opErr
	}}
	pc, err := lc.ListenPacket(context.Background(), "udp", addr)
	if err != nil {
		return nil, err
	}
	return pc.(*net.UDPConn), nil
}
