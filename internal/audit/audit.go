// Package audit writes quicport's tamper-evident audit log: one JSON object
// per line, each carrying the SHA-256 of the line before it, so editing,
// removing or reordering a line breaks the chain at the next one.
//
// The log records security decisions (authentication, forwards, refusals,
// rate limiting, shutdown); it never records secrets.
package audit

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Genesis is the "previous hash" of a log's first line.
var Genesis = hex.EncodeToString(make([]byte, sha256.Size))

// maxLine bounds one line when reading a log back.
const maxLine = 1 << 20

// Log appends hash-chained JSON lines to a file. It is safe for concurrent
// use. A nil *Log records nothing.
//
// Several processes may append to one log (a control plane and its data
// planes): each append holds an exclusive flock on the file, and a writer
// that finds the file grown by someone else takes the hash of the last line
// from the file, so the chain stays one chain.
type Log struct {
	mu   sync.Mutex
	f    *os.File
	prev string
	size int64 // the file's size after our last append
	now  func() time.Time
}

// Open opens (creating with mode 0600) the audit log at path and continues
// its chain. It refuses a file that others can read or write.
func Open(path string) (*Log, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("audit log: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		f.Close()
		return nil, fmt.Errorf("audit log %s has mode %04o; run: chmod 600 %s", path, fi.Mode().Perm(), path)
	}
	prev, err := lastHash(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("audit log %s: %w", path, err)
	}
	return &Log{f: f, prev: prev, size: fi.Size(), now: time.Now}, nil
}

// tailHash returns the hash of the last line of a file of size bytes.
func tailHash(f *os.File, size int64) (string, error) {
	if size == 0 {
		return Genesis, nil
	}
	n := min(size, maxLine+1)
	buf := make([]byte, n)
	if _, err := f.ReadAt(buf, size-n); err != nil {
		return "", err
	}
	buf = bytes.TrimSuffix(buf, []byte("\n"))
	if i := bytes.LastIndexByte(buf, '\n'); i >= 0 {
		buf = buf[i+1:]
	} else if n < size {
		return "", fmt.Errorf("last line longer than %d bytes", maxLine)
	}
	return hashLine(buf), nil
}

// lastHash returns the hash of the file's last line (Genesis when empty).
func lastHash(f *os.File) (string, error) {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return "", err
	}
	prev := Genesis
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), maxLine)
	for sc.Scan() {
		prev = hashLine(sc.Bytes())
	}
	return prev, sc.Err()
}

func hashLine(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// Event is one audit record. Type names what happened ("auth_success",
// "auth_failure", "forward_open", "forward_close", "forward_denied",
// "rate_limited", "shutdown", ...); Fields add detail and must not hold
// secrets.
type Event struct {
	Type   string
	Fields map[string]any
}

// Record appends e as one line. The write is a single append of the whole
// line, so concurrent writers never interleave.
func (l *Log) Record(e Event) error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := unix.Flock(int(l.f.Fd()), unix.LOCK_EX); err != nil {
		return fmt.Errorf("audit: lock: %w", err)
	}
	defer unix.Flock(int(l.f.Fd()), unix.LOCK_UN)
	fi, err := l.f.Stat()
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	if fi.Size() != l.size {
		// Another process appended since our last line: chain onto its.
		if l.prev, err = tailHash(l.f, fi.Size()); err != nil {
			return fmt.Errorf("audit: read the last line: %w", err)
		}
	}
	rec := make(map[string]any, len(e.Fields)+3)
	for k, v := range e.Fields {
		rec[k] = v
	}
	rec["time"] = l.now().UTC().Format(time.RFC3339Nano)
	rec["event"] = e.Type
	rec["prev"] = l.prev
	line, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	if _, err := l.f.Write(append(line, '\n')); err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	l.prev = hashLine(line)
	l.size = fi.Size() + int64(len(line)) + 1
	return nil
}

// Close closes the file.
func (l *Log) Close() error {
	if l == nil {
		return nil
	}
	return l.f.Close()
}

// ErrBroken is wrapped by Verify's error when the chain does not hold.
var ErrBroken = errors.New("audit log chain broken")

// Verify checks the chain of the log in r. It returns the number of lines
// and the hash of the last one (to anchor elsewhere: an edit of the last
// line, or its removal, is only visible against such an anchor), or an
// error naming the first line where the chain breaks.
func Verify(r io.Reader) (lines int, last string, err error) {
	prev := Genesis
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), maxLine)
	for sc.Scan() {
		lines++
		b := sc.Bytes()
		var rec struct {
			Prev *string `json:"prev"`
		}
		if err := json.Unmarshal(b, &rec); err != nil || rec.Prev == nil {
			return lines, "", fmt.Errorf("%w at line %d: not an audit record (edited?)", ErrBroken, lines)
		}
		if *rec.Prev != prev {
			what := "line %d was edited, or lines before %d were removed or reordered"
			if lines == 1 {
				return lines, "", fmt.Errorf("%w at line 1: the log does not start at its beginning (lines were removed from the start)", ErrBroken)
			}
			return lines, "", fmt.Errorf("%w at line %d: "+what, ErrBroken, lines, lines-1, lines)
		}
		prev = hashLine(b)
	}
	if err := sc.Err(); err != nil {
		return lines, "", err
	}
	return lines, prev, nil
}
