package watcher

import (
	"bytes"
	"errors"
	"io"
	"os"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"

	"k8s.io/apimachinery/pkg/runtime/serializer/json"
)

type frameResult struct {
	Frames []string
	Err    string // what ended the stream
}

// readFrames reads r's frames with a buffer of size bytes, joining the
// parts of a frame that does not fit as the streaming decoder does.
func readFrames(r io.Reader, size int) frameResult {
	return readSomeFrames(r, size, 10000)
}

// readSomeFrames is readFrames for at most max frames.
func readSomeFrames(r io.Reader, size, max int) frameResult {
	var res frameResult
	var frame []byte
	buf := make([]byte, size)
	for len(res.Frames) < max {
		n, err := r.Read(buf)
		frame = append(frame, buf[:n]...)
		if errors.Is(err, io.ErrShortBuffer) {
			continue
		}
		if err != nil {
			res.Err = err.Error()
			return res
		}
		res.Frames = append(res.Frames, string(frame))
		frame = nil
	}
	return res
}

// TestObjectFramerMatchesJSONFramer reads streams of every kind through
// objectFramer and json.Framer, delivered whole, a byte at a time and in
// odd chunks, into buffers larger and smaller than a frame, and wants the
// same frames and the same error at the end.
func TestObjectFramerMatchesJSONFramer(t *testing.T) {
	status, err := os.ReadFile("testdata/lbroute-status.json")
	if err != nil {
		t.Fatal(err)
	}
	ev := `{"type":"MODIFIED","object":` + string(bytes.TrimSpace(status)) + `}`
	streams := map[string]string{
		"empty":                 "",
		"only spaces":           " \n\t\r\n",
		"events, one per line":  ev + "\n" + ev + "\n" + ev + "\n",
		"events, no separator":  ev + ev + `{}{"a":[1,{"b":"}"}]}`,
		"strings with brackets": `{"a":"}{][\"\\","b":["\\\\\"]"]}` + "\n" + `{"c":"\u007d"}`,
		"pretty":                "{\n  \"type\": \"ADDED\",\n  \"object\": {\"a\": 1}\n}\n",
		"ends inside an event":  ev + "\n" + ev[:100],
		"ends inside a string":  `{"a":1}` + "\n" + `{"a":"\`,
		"invalid inside":        ev + "\n" + `{"type":"ADDED","object":{"a":tru}}` + "\n" + ev,
		"closed too often":      `{"a":1}}` + "\n" + `{"b":2}`,
		"unbalanced":            `{"a":[1}]` + "\n" + `{"b":2}`,
		"garbage after":         ev + " xyz",
		"scalars then objects":  `1 "two" [3] null {"a":1} ` + ev,
		"array first":           `[{"a":1}]` + ev,
		"leading spaces":        "\n\n   " + ev + "\n   \n",
		"control character":     "{\"a\":\"x\x01\"}\n" + ev,
		"invalid UTF-8":         "{\"a\":\"\xff\xfe\"}\n" + ev,
		"deep":                  strings.Repeat(`{"a":`, 200) + "1" + strings.Repeat("}", 200),
	}
	readers := map[string]func(string) io.Reader{
		"whole":       func(s string) io.Reader { return strings.NewReader(s) },
		"byte a time": func(s string) io.Reader { return iotest.OneByteReader(strings.NewReader(s)) },
		"half":        func(s string) io.Reader { return iotest.HalfReader(strings.NewReader(s)) },
		"data and EOF": func(s string) io.Reader {
			return iotest.DataErrReader(strings.NewReader(s))
		},
		"failing": func(s string) io.Reader {
			return io.MultiReader(strings.NewReader(s), iotest.ErrReader(errors.New("connection reset")))
		},
	}
	// The streams whose frames objectFramer must find on its own (the
	// others it may hand to json.Framer's reader).
	plain := map[string]bool{
		"events, one per line": true, "events, no separator": true, "strings with brackets": true,
		"leading spaces": true, "deep": true, "invalid inside": true, "ends inside an event": true,
	}
	framed := 0
	for name, s := range streams {
		for rname, reader := range readers {
			for _, size := range []int{16, 1024, 64 << 10} {
				want := readFrames(json.Framer.NewFrameReader(io.NopCloser(reader(s))), size)
				got := readFrames(objectFramer{}.NewFrameReader(io.NopCloser(reader(s))), size)
				if !reflect.DeepEqual(got, want) {
					t.Errorf("%s, %s, buffer %d:\n got %d frames %q, %s\nwant %d frames %q, %s", name, rname, size,
						len(got.Frames), got.Frames, got.Err, len(want.Frames), want.Frames, want.Err)
				}
				framed += len(got.Frames)
				if !plain[name] {
					continue
				}
				// Up to the last whole object, the frames are its own.
				n := len(want.Frames)
				if name == "invalid inside" {
					n = 1
				}
				r := objectFramer{}.NewFrameReader(io.NopCloser(reader(s)))
				if res := readSomeFrames(r, size, n); len(res.Frames) != n || r.(*objectFrameReader).fallback != nil {
					t.Errorf("%s, %s, buffer %d: %d frames, then json.Framer's reader (%v)", name, rname, size, len(res.Frames), r.(*objectFrameReader).fallback != nil)
				}
			}
		}
	}
	if framed < 100 {
		t.Errorf("only %d frames in all the streams", framed)
	}
}

// TestObjectFramerFramesObjectsItself checks that the frames of an
// apiserver's watch stream come from objectFramer's own pass, not from
// json.Framer's reader, and that it reads no further than the frame it
// returns (a watch stream blocks between events).
func TestObjectFramerFramesObjectsItself(t *testing.T) {
	pr, pw := io.Pipe()
	defer pr.Close()
	r := objectFramer{}.NewFrameReader(pr).(*objectFrameReader)
	go func() {
		_, _ = pw.Write([]byte(`{"type":"ADDED","object":{"a":"}"}}` + "\n"))
	}()
	buf := make([]byte, 1024)
	n, err := r.Read(buf)
	if err != nil || string(buf[:n]) != `{"type":"ADDED","object":{"a":"}"}}` {
		t.Fatalf("first frame: %q, %v", buf[:n], err)
	}
	if r.fallback != nil {
		t.Fatal("an object was framed by json.Framer's reader")
	}
	go func() { _, _ = pw.Write([]byte(`{"b":2}`)); pw.Close() }()
	if n, err = r.Read(buf); err != nil || string(buf[:n]) != `{"b":2}` {
		t.Fatalf("second frame: %q, %v", buf[:n], err)
	}
	if _, err = r.Read(buf); err != io.EOF {
		t.Fatalf("end of stream: %v", err)
	}
}
