package watcher

import (
	"bytes"
	"encoding/json"
	"io"

	"k8s.io/apimachinery/pkg/runtime"
	serializerjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
)

// objectFramer splits the LBRoute watch stream into frames exactly as
// json.Framer does, in one validating pass instead of two. json.Framer
// reads each value with an encoding/json Decoder into a json.RawMessage:
// the Decoder scans the value to find its end and then decodes it, which
// scans it again to skip it before copying it out. objectFramer finds the
// end of a top-level object by its strings and brackets alone, validates
// the object with json.Valid (the same scanner) and hands out those bytes.
// Whatever is not a whole object that way — a value of another kind, bytes
// json.Valid refuses, a stream that ends or fails part-way — it hands,
// from the first byte it has not framed, to json.Framer's own reader for
// the rest of the stream, so the frames and the errors are json.Framer's.
type objectFramer struct{}

var _ runtime.Framer = objectFramer{}

func (objectFramer) NewFrameReader(r io.ReadCloser) io.ReadCloser {
	return &objectFrameReader{r: r}
}

func (objectFramer) NewFrameWriter(w io.Writer) io.Writer {
	return serializerjson.Framer.NewFrameWriter(w)
}

type objectFrameReader struct {
	r io.ReadCloser
	// buf[off:] has been read from r and not framed yet.
	buf []byte
	off int
	// err is what r returned last, once it returned an error.
	err error
	// remaining is the part of the last frame the caller had no room for.
	remaining []byte
	// fallback is json.Framer's reader, once the stream needs it.
	fallback io.ReadCloser
}

// Read returns one frame, or its first len(data) bytes and
// io.ErrShortBuffer (then the rest on the next calls), as json.Framer's
// reader does.
func (f *objectFrameReader) Read(data []byte) (int, error) {
	if len(f.remaining) > 0 {
		n := copy(data, f.remaining)
		f.remaining = f.remaining[n:]
		if len(f.remaining) > 0 {
			return n, io.ErrShortBuffer
		}
		f.remaining = nil
		return n, nil
	}
	if f.fallback == nil {
		frame, ok := f.next()
		if ok {
			n := copy(data, frame)
			if n < len(frame) {
				// frame is in buf, which the next read reuses.
				f.remaining = append([]byte(nil), frame[n:]...)
				return n, io.ErrShortBuffer
			}
			return n, nil
		}
		var rest io.Reader = f.r
		if f.err != nil {
			rest = errReader{f.err}
		}
		f.fallback = serializerjson.Framer.NewFrameReader(readCloser{
			Reader: io.MultiReader(bytes.NewReader(f.buf[f.off:]), rest),
			Closer: f.r,
		})
		f.buf, f.off = nil, 0
	}
	return f.fallback.Read(data)
}

func (f *objectFrameReader) Close() error { return f.r.Close() }

// next returns the next top-level object in the stream if it is valid
// JSON, reading from r only until it is complete (a watch stream blocks
// between events), and false for anything else, with buf[off:] still
// holding every byte not framed.
func (f *objectFrameReader) next() ([]byte, bool) {
	for {
		for f.off < len(f.buf) && isJSONSpace(f.buf[f.off]) {
			f.off++
		}
		if f.off < len(f.buf) {
			break
		}
		if !f.fill() {
			return nil, false
		}
	}
	if f.buf[f.off] != '{' {
		return nil, false
	}
	var sc objectScanner
	for {
		if end := sc.scan(f.buf[f.off:]); end >= 0 {
			frame := f.buf[f.off : f.off+end]
			if !json.Valid(frame) {
				return nil, false
			}
			f.off += end
			return frame, true
		}
		// fill keeps buf[off:], the object so far, at the front.
		if !f.fill() {
			return nil, false
		}
	}
}

// objectScanner finds where a JSON object (or array) ends by its strings
// and brackets alone, which is all it takes in valid JSON. It resumes where
// it left off, so a frame arriving in pieces is scanned once.
type objectScanner struct {
	n        int // bytes scanned so far
	depth    int
	inString bool
}

// scan goes on over obj (the value's bytes from its first one, more of
// them than last time) and returns the value's length once its brackets
// balance, -1 until then.
func (s *objectScanner) scan(obj []byte) int {
	for i := s.n; i < len(obj); i++ {
		if s.inString {
			// Most of an object is strings: jump to the next quote and
			// look back for the backslashes that would escape it.
			q := bytes.IndexByte(obj[i:], '"')
			if q < 0 {
				break
			}
			i += q
			if !escapedQuote(obj[:i]) {
				s.inString = false
			}
			continue
		}
		switch obj[i] {
		case '"':
			s.inString = true
		case '{', '[':
			s.depth++
		case '}', ']':
			s.depth--
			if s.depth == 0 {
				s.n = i + 1
				return i + 1
			}
		}
	}
	s.n = len(obj)
	return -1
}

// fill reads more of r into buf, first moving buf[off:] to the front, and
// says whether there is any more to scan.
func (f *objectFrameReader) fill() bool {
	if f.err != nil {
		return false
	}
	if f.off > 0 {
		f.buf = f.buf[:copy(f.buf, f.buf[f.off:])]
		f.off = 0
	}
	if cap(f.buf)-len(f.buf) < 4<<10 {
		f.buf = append(make([]byte, 0, 2*cap(f.buf)+8<<10), f.buf...)
	}
	n, err := f.r.Read(f.buf[len(f.buf):cap(f.buf)])
	f.buf = f.buf[:len(f.buf)+n]
	if err != nil {
		f.err = err
	}
	return n > 0 || err == nil
}

// escapedQuote reports whether a quote after b is escaped: preceded by an
// odd number of backslashes.
func escapedQuote(b []byte) bool {
	n := 0
	for n < len(b) && b[len(b)-1-n] == '\\' {
		n++
	}
	return n%2 == 1
}

func isJSONSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

type readCloser struct {
	io.Reader
	io.Closer
}
