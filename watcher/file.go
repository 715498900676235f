package watcher

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/arraynetworks/edgeagent/api/v1alpha1"
	"github.com/arraynetworks/edgeagent/model"
	"github.com/fsnotify/fsnotify"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/api/equality"
)

// DefaultNamespace is given to standalone LBRoutes that name none.
const DefaultNamespace = "default"

// FileSource reads LBRoutes from the YAML files of one directory (*.yaml,
// *.yml, *.json; several documents per file) and watches it. Bursts of file
// events are debounced into one reload.
//
// A document that cannot be decoded, or an object that fails validation, is
// reported and skipped. If it was good before, its last good version stays
// in force until the file is fixed or the object deleted — the same thing a
// cluster gives you, where the apiserver refuses the bad update and the old
// object lives on.
type FileSource struct {
	dir      string
	absDir   string
	validate func(*v1alpha1.LBRoute) model.Problems
	ignore   map[string]bool
	debounce time.Duration
	log      *slog.Logger
	badFiles prometheus.Gauge
	reloads  prometheus.Counter

	mu     sync.Mutex
	files  map[string]map[string]*v1alpha1.LBRoute // file → key → last good object
	errs   map[string][]SourceError                // file → problems now
	sums   map[string][sha256.Size]byte            // file → content last fully loaded
	dirty  bool                                    // the running Reload changed something
	synced bool
}

// FileOptions configure a FileSource.
type FileOptions struct {
	Dir string
	// Validate checks one object; objects with problems are treated like
	// undecodable ones. Nil accepts everything.
	Validate func(*v1alpha1.LBRoute) model.Problems
	// Debounce is how long the directory must be quiet before a reload;
	// default 100ms.
	Debounce time.Duration
	// Ignore lists files in Dir that are not LBRoute sources (the agent's
	// own config file, when it lives beside the routes).
	Ignore     []string
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// NewFileSource returns a source for opts.Dir. The directory must exist.
func NewFileSource(opts FileOptions) (*FileSource, error) {
	st, err := os.Stat(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("source dir: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("source dir %s: not a directory", opts.Dir)
	}
	absDir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("source dir: %w", err)
	}
	s := &FileSource{
		dir:      opts.Dir,
		absDir:   absDir,
		ignore:   map[string]bool{},
		validate: opts.Validate,
		debounce: cmp.Or(opts.Debounce, 100*time.Millisecond),
		log:      cmp.Or(opts.Logger, slog.Default()),
		files:    map[string]map[string]*v1alpha1.LBRoute{},
		sums:     map[string][sha256.Size]byte{},
		errs:     map[string][]SourceError{},
		badFiles: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "edgeagent_source_bad_objects",
			Help: "LBRoute documents or objects in the source directory that are currently rejected.",
		}),
		reloads: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "edgeagent_source_reloads_total",
			Help: "Reloads of the LBRoute source directory.",
		}),
	}
	for _, f := range opts.Ignore {
		if abs, err := filepath.Abs(f); err == nil {
			s.ignore[abs] = true
		}
	}
	if opts.Registerer != nil {
		opts.Registerer.MustRegister(s.badFiles, s.reloads)
	}
	return s, nil
}

// Run loads the directory, then watches it until ctx ends.
func (s *FileSource) Run(ctx context.Context, changed func()) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch %s: %w", s.dir, err)
	}
	defer w.Close()
	if err := w.Add(s.dir); err != nil {
		return fmt.Errorf("watch %s: %w", s.dir, err)
	}
	s.Reload()
	changed()

	var timer *time.Timer
	var fire <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return errors.New("file watcher closed")
			}
			if !isManifest(ev.Name) && ev.Name != s.dir {
				continue
			}
			// Fast path: a new or grown file whose every document is good
			// is applied at once, additively (nothing is removed), so an
			// LBRoute appears in milliseconds.
			if ev.Op.Has(fsnotify.Write) || ev.Op.Has(fsnotify.Create) {
				if s.loadAdditive(ev.Name) {
					changed()
				}
			}
			// Then debounce the full reload: editors write a file in several
			// steps (truncate, write, rename), and only a quiet directory is
			// trusted to remove objects.
			if timer == nil {
				timer = time.NewTimer(s.debounce)
			} else {
				timer.Reset(s.debounce)
			}
			fire = timer.C
		case err, ok := <-w.Errors:
			if !ok {
				return errors.New("file watcher closed")
			}
			s.log.Warn("watch source dir", "dir", s.dir, "err", err)
		case <-fire:
			fire = nil
			if s.Reload() {
				changed()
			}
		}
	}
}

// Reload rereads the directory and reports whether anything changed.
func (s *FileSource) Reload() bool {
	s.reloads.Inc()
	entries, err := os.ReadDir(s.dir)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dirty = false
	s.synced = true
	if err != nil {
		// Keep what we have: a transient read error must not withdraw VIPs.
		s.errs[s.dir] = []SourceError{{Source: s.dir, Error: err.Error()}}
		s.log.Error("read source dir", "dir", s.dir, "err", err)
		return true
	}
	delete(s.errs, s.dir)
	present := map[string]bool{}
	for _, e := range entries {
		if e.IsDir() || !isManifest(e.Name()) {
			continue
		}
		path := filepath.Join(s.dir, e.Name())
		if abs, err := filepath.Abs(path); err == nil && s.ignore[abs] {
			continue
		}
		present[path] = true
		s.loadFile(path)
	}
	for path := range s.files {
		if !present[path] {
			s.forget(path)
		}
	}
	for path := range s.errs {
		if path != s.dir && !present[path] {
			s.forget(path)
		}
	}
	if s.dirty {
		// A change elsewhere can settle an unchanged file's problem (the
		// other definition of a duplicate object is gone): read files with
		// problems again.
		for path := range s.errs {
			if path != s.dir && present[path] {
				delete(s.sums, path)
				s.loadFile(path)
			}
		}
	}
	n := 0
	for _, es := range s.errs {
		n += len(es)
	}
	s.badFiles.Set(float64(n))
	return s.dirty
}

// forget drops a file that is gone; the caller holds mu.
func (s *FileSource) forget(path string) {
	delete(s.files, path)
	delete(s.errs, path)
	delete(s.sums, path)
	s.dirty = true
}

func (s *FileSource) loadFile(path string) {
	name := filepath.Base(path)
	data, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			s.forget(path)
			return
		}
		s.errs[path] = []SourceError{{Source: name, Error: err.Error()}}
		s.dirty = true
		return
	}
	// An unchanged file is not decoded again: at 10,000 objects decoding
	// dominates a reload, and the garbage it makes is what drives the
	// agent's peak memory.
	sum := sha256.Sum256(data)
	if old, ok := s.sums[path]; ok && old == sum {
		return
	}
	s.sums[path] = sum
	s.dirty = true
	var errs []SourceError
	good := map[string]*v1alpha1.LBRoute{}
	for _, d := range Decode(data, DefaultNamespace) {
		if d.Err != nil {
			errs = append(errs, SourceError{Source: fmt.Sprintf("%s[%d]", name, d.Index), Error: d.Err.Error()})
			continue
		}
		key := d.Route.Namespace + "/" + d.Route.Name
		if s.validate != nil {
			if ps := s.validate(d.Route); len(ps) > 0 {
				for _, p := range ps {
					errs = append(errs, SourceError{Source: fmt.Sprintf("%s: %s", name, key), Error: p.String()})
				}
				continue
			}
		}
		if other := s.owner(key, path); other != "" {
			errs = append(errs, SourceError{Source: fmt.Sprintf("%s: %s", name, key), Error: "also defined in " + filepath.Base(other)})
			continue
		}
		if _, dup := good[key]; dup {
			errs = append(errs, SourceError{Source: fmt.Sprintf("%s: %s", name, key), Error: "defined twice in the file"})
			continue
		}
		good[key] = d.Route
	}
	if len(errs) > 0 {
		// Keep the last good version of every object the file held: we
		// cannot tell which object a broken document was meant to be.
		for key, rt := range s.files[path] {
			if _, ok := good[key]; !ok {
				good[key] = rt
			}
		}
		s.errs[path] = errs
		for _, e := range errs {
			s.log.Warn("bad LBRoute input skipped", "source", e.Source, "err", e.Error)
		}
	} else {
		delete(s.errs, path)
	}
	s.files[path] = good
}

// loadAdditive applies one file's objects without removing any: it adds
// new objects and updates changed ones, and only when the whole file
// decodes and validates. A half-written file (empty, or cut mid-document)
// therefore changes nothing here; the debounced full reload that follows
// sees the finished file and also handles removals. It reports whether
// anything changed.
func (s *FileSource) loadAdditive(path string) bool {
	if abs, err := filepath.Abs(path); err != nil || s.ignore[abs] || filepath.Dir(abs) != s.absDir {
		return false
	}
	data, err := os.ReadFile(path)
	if err != nil || len(bytes.TrimSpace(data)) == 0 {
		return false
	}
	good := map[string]*v1alpha1.LBRoute{}
	for _, d := range Decode(data, DefaultNamespace) {
		if d.Err != nil {
			return false
		}
		if s.validate != nil && len(s.validate(d.Route)) > 0 {
			return false
		}
		good[d.Route.Namespace+"/"+d.Route.Name] = d.Route
	}
	if len(good) == 0 {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.synced {
		return false
	}
	cur := maps.Clone(s.files[path])
	if cur == nil {
		cur = map[string]*v1alpha1.LBRoute{}
	}
	changed := false
	for key, rt := range good {
		if s.owner(key, path) != "" {
			return false
		}
		if old, ok := cur[key]; !ok || !equality.Semantic.DeepEqual(old, rt) {
			cur[key], changed = rt, true
		}
	}
	if changed {
		s.files[path] = cur
		// The next full reload must decode this file again, whatever it
		// holds then.
		delete(s.sums, path)
	}
	return changed
}

// owner returns another file that already defines key, if any.
func (s *FileSource) owner(key, path string) string {
	for p, objs := range s.files {
		if p == path {
			continue
		}
		if _, ok := objs[key]; ok && p < path {
			return p
		}
	}
	return ""
}

// Snapshot returns the current LBRoutes, sorted by namespace/name.
func (s *FileSource) Snapshot() Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	var snap Snapshot
	for _, objs := range s.files {
		for _, rt := range objs {
			snap.Routes = append(snap.Routes, rt)
		}
	}
	slices.SortFunc(snap.Routes, func(a, b *v1alpha1.LBRoute) int {
		return cmp.Or(strings.Compare(a.Namespace, b.Namespace), strings.Compare(a.Name, b.Name))
	})
	for _, es := range s.errs {
		snap.Errors = append(snap.Errors, es...)
	}
	slices.SortFunc(snap.Errors, func(a, b SourceError) int {
		return cmp.Or(strings.Compare(a.Source, b.Source), strings.Compare(a.Error, b.Error))
	})
	return snap
}

// Synced reports whether the directory has been read once.
func (s *FileSource) Synced() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.synced
}

func isManifest(name string) bool {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".yaml", ".yml", ".json":
		return !strings.HasPrefix(filepath.Base(name), ".")
	}
	return false
}
