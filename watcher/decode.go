package watcher

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/arraynetworks/edgeagent/api/v1alpha1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// MaxDocumentBytes bounds one YAML document, so a runaway file cannot make
// the agent allocate without limit.
const MaxDocumentBytes = 4 << 20

// Document is one decoded YAML document: an LBRoute, or the reason it is not.
type Document struct {
	// Index is the document's position in its file, from 0.
	Index int
	Route *v1alpha1.LBRoute
	Err   error
}

// Decode splits a multi-document YAML (or JSON) stream into LBRoutes. Each
// document is decoded strictly — an unknown or misspelt field is an error
// naming it, rather than a silently ignored setting — and on its own, so
// one bad document does not hide the others. Objects without a namespace
// get defaultNamespace. Empty documents are skipped.
func Decode(data []byte, defaultNamespace string) []Document {
	var docs []Document
	r := utilyaml.NewYAMLReader(bufio.NewReaderSize(bytes.NewReader(data), 64<<10))
	for i := 0; ; i++ {
		raw, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			docs = append(docs, Document{Index: i, Err: fmt.Errorf("split documents: %w", err)})
			break
		}
		if len(bytes.TrimSpace(stripComments(raw))) == 0 {
			i--
			continue
		}
		rt, err := decodeOne(raw, defaultNamespace)
		docs = append(docs, Document{Index: i, Route: rt, Err: err})
	}
	return docs
}

func decodeOne(raw []byte, defaultNamespace string) (*v1alpha1.LBRoute, error) {
	if len(raw) > MaxDocumentBytes {
		return nil, fmt.Errorf("document is %d bytes, more than the %d allowed", len(raw), MaxDocumentBytes)
	}
	if !utf8.Valid(raw) {
		return nil, errors.New("document is not valid UTF-8")
	}
	var tm struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
	}
	if err := yaml.Unmarshal(raw, &tm); err != nil {
		return nil, fmt.Errorf("parse YAML: %w", err)
	}
	if tm.Kind != "LBRoute" {
		return nil, fmt.Errorf("kind: %q is not LBRoute", tm.Kind)
	}
	if tm.APIVersion != v1alpha1.GroupVersion.String() {
		return nil, fmt.Errorf("apiVersion: %q is not %s", tm.APIVersion, v1alpha1.GroupVersion)
	}
	js, err := yaml.YAMLToJSON(raw)
	if err != nil {
		return nil, fmt.Errorf("parse YAML: %w", err)
	}
	rt := &v1alpha1.LBRoute{}
	// Case-sensitive and strict, as the apiserver decodes: "vsIp" is an
	// unknown field, not a spelling of vsIP.
	strict, err := kjson.UnmarshalStrict(js, rt)
	if err != nil {
		return nil, fmt.Errorf("decode LBRoute: %s", cleanDecodeError(err))
	}
	if len(strict) > 0 {
		msgs := make([]string, len(strict))
		for i, e := range strict {
			msgs[i] = cleanDecodeError(e)
		}
		return nil, fmt.Errorf("decode LBRoute: %s", strings.Join(msgs, "; "))
	}
	if rt.Namespace == "" {
		rt.Namespace = defaultNamespace
	}
	return rt, nil
}

// cleanDecodeError drops the layers of "error unmarshaling JSON: while
// decoding JSON:" that sigs.k8s.io/yaml puts in front of the useful part.
func cleanDecodeError(err error) string {
	s := err.Error()
	for _, p := range []string{"error unmarshaling JSON: ", "while decoding JSON: ", "json: "} {
		s = strings.ReplaceAll(s, p, "")
	}
	return s
}

func stripComments(b []byte) []byte {
	var out []byte
	for line := range bytes.SplitSeq(b, []byte("\n")) {
		t := bytes.TrimSpace(line)
		if len(t) == 0 || t[0] == '#' || bytes.Equal(t, []byte("---")) {
			continue
		}
		out = append(out, line...)
		out = append(out, '\n')
	}
	return out
}
