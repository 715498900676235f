// Package image assembles the agent's container image without Docker and
// without a base image: the static agent binary, iptables (both the
// nf_tables and the legacy backend) with its extensions and exactly the
// shared libraries they load, and the CA bundle. The files come from a
// directory where pinned Debian packages were unpacked (hack/image.sh), so
// two builds on two machines hold the same bytes; modes, owners and times
// in the layer are fixed, so the same inputs give the same image digest.
//
// The layer is written with archive/tar and everything above it — the
// config, the manifest, the docker-archive and OCI layout formats, gzip and
// digests — is go-containerregistry's.
package image

import (
	"archive/tar"
	"bytes"
	"cmp"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Entry is one file of the image.
type Entry struct {
	// Path inside the image, absolute ("/usr/sbin/xtables-nft-multi").
	Path string
	// Mode holds the permission bits (regular files; directories are 0755,
	// links 0777).
	Mode fs.FileMode
	// At most one of Data (a regular file's content) and Link (a symlink
	// target); Dir makes the entry an empty directory.
	Data []byte
	Link string
	Dir  bool
}

// Layout of the image.
const (
	// AgentPath is the agent binary and the image's entrypoint.
	AgentPath = "/usr/local/bin/edgeagent"
	// CABundle is where Go's crypto/x509 (and OpenSSL) look first.
	CABundle = "/etc/ssl/certs/ca-certificates.crt"
	// XtablesDir is where the iptables binaries look for their extensions
	// (Debian's configured XTABLES_LIBDIR).
	XtablesDir = "/usr/lib/x86_64-linux-gnu/xtables"
)

// libDirs are the dynamic loader's default search path on Debian amd64;
// the image has no ld.so.cache, so libraries must sit in one of them.
var libDirs = []string{"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib", "/usr/lib"}

// iptablesLinks are the command names of both backends: each is a link to
// its backend's multi-call binary, as Debian installs them (alternatives
// aside). The plain names point at the nf_tables backend, Debian's default;
// the agent itself always calls the backend-qualified names
// (dataplane.iptablesMode).
var iptablesLinks = map[string]string{}

func init() {
	for _, fam := range []string{"iptables", "ip6tables"} {
		for _, suffix := range []string{"", "-save", "-restore"} {
			iptablesLinks[fam+"-nft"+suffix] = "xtables-nft-multi"
			iptablesLinks[fam+"-legacy"+suffix] = "xtables-legacy-multi"
			iptablesLinks[fam+suffix] = "xtables-nft-multi"
		}
	}
}

// Files returns the image's files: the agent binary (agent, a host path),
// and from root (the unpacked Debian packages) the iptables binaries,
// their links, every extension, the shared libraries they need (followed
// through DT_NEEDED, the loader included) and a CA bundle made of the
// packaged Mozilla certificates in name order, as update-ca-certificates
// would make it.
func Files(root, agent string) ([]Entry, error) {
	bin, err := os.ReadFile(agent)
	if err != nil {
		return nil, fmt.Errorf("agent binary: %w", err)
	}
	if err := checkStatic(bin); err != nil {
		return nil, fmt.Errorf("agent binary %s: %w", agent, err)
	}
	c := &collector{root: root, seen: map[string]bool{}}
	c.add(Entry{Path: AgentPath, Mode: 0o755, Data: bin})
	for _, multi := range []string{"xtables-nft-multi", "xtables-legacy-multi"} {
		if err := c.elf("/usr/sbin/" + multi); err != nil {
			return nil, err
		}
	}
	for name, target := range iptablesLinks {
		c.add(Entry{Path: "/usr/sbin/" + name, Link: target})
	}
	// The extensions of iptables and ip6tables; ebtables' and arptables'
	// (libebt_, libarpt_) stay out with their commands.
	var exts []string
	for _, pattern := range []string{"libxt_*.so", "libipt_*.so", "libip6t_*.so"} {
		m, err := filepath.Glob(filepath.Join(root, XtablesDir, pattern))
		if err != nil {
			return nil, err
		}
		exts = append(exts, m...)
	}
	if len(exts) == 0 {
		return nil, fmt.Errorf("no iptables extensions in %s (is the iptables package unpacked in %s?)", XtablesDir, root)
	}
	for _, e := range exts {
		if err := c.elf(path.Join(XtablesDir, filepath.Base(e))); err != nil {
			return nil, err
		}
	}
	bundle, err := caBundle(root)
	if err != nil {
		return nil, err
	}
	c.add(Entry{Path: CABundle, Mode: 0o644, Data: bundle})
	// Mount points that exist in every container: /run holds the xtables
	// lock (a hostPath in the DaemonSet), /tmp an emptyDir.
	c.add(Entry{Path: "/run", Dir: true})
	c.add(Entry{Path: "/tmp", Dir: true, Mode: 0o1777})
	if c.err != nil {
		return nil, c.err
	}
	slices.SortFunc(c.out, func(a, b Entry) int { return cmp.Compare(a.Path, b.Path) })
	return c.out, nil
}

// checkStatic refuses a dynamically linked agent: the image carries only
// the libraries iptables needs.
func checkStatic(b []byte) error {
	f, err := elf.NewFile(bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("not an ELF binary: %w", err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return errors.New("dynamically linked (build it with CGO_ENABLED=0)")
		}
	}
	return nil
}

type collector struct {
	root string
	seen map[string]bool
	out  []Entry
	err  error
}

func (c *collector) add(e Entry) {
	if c.seen[e.Path] {
		return
	}
	c.seen[e.Path] = true
	c.out = append(c.out, e)
}

// file adds the file at p (an image path, looked up under root), following
// symlinks inside root so both the link and its target are in the image.
func (c *collector) file(p string) (data []byte, final string, err error) {
	for range 16 {
		host := filepath.Join(c.root, p)
		fi, err := os.Lstat(host)
		if err != nil {
			return nil, "", fmt.Errorf("%s: %w", p, err)
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			target, err := os.Readlink(host)
			if err != nil {
				return nil, "", err
			}
			c.add(Entry{Path: p, Link: target})
			if !path.IsAbs(target) {
				target = path.Join(path.Dir(p), target)
			}
			p = target
			continue
		}
		b, err := os.ReadFile(host)
		if err != nil {
			return nil, "", err
		}
		c.add(Entry{Path: p, Mode: fi.Mode().Perm(), Data: b})
		return b, p, nil
	}
	return nil, "", fmt.Errorf("%s: too many levels of symlinks", p)
}

// elf adds an ELF file and, transitively, its interpreter and the shared
// libraries it names (DT_NEEDED), resolved in the loader's default
// directories.
func (c *collector) elf(p string) error {
	if c.seen[p] {
		return nil
	}
	b, _, err := c.file(p)
	if err != nil {
		return err
	}
	f, err := elf.NewFile(bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	defer f.Close()
	for _, prog := range f.Progs {
		if prog.Type != elf.PT_INTERP {
			continue
		}
		interp, err := io.ReadAll(prog.Open())
		if err != nil {
			return fmt.Errorf("%s: interpreter: %w", p, err)
		}
		if err := c.elf(strings.TrimRight(string(interp), "\x00")); err != nil {
			return err
		}
	}
	libs, err := f.ImportedLibraries()
	if err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	for _, lib := range libs {
		found := ""
		for _, dir := range libDirs {
			if _, err := os.Lstat(filepath.Join(c.root, dir, lib)); err == nil {
				found = path.Join(dir, lib)
				break
			}
		}
		if found == "" {
			return fmt.Errorf("%s needs %s, which no unpacked package provides (add it to hack/image/debs.lock)", p, lib)
		}
		if err := c.elf(found); err != nil {
			return err
		}
	}
	return nil
}

// caBundle concatenates the packaged certificates in path order.
func caBundle(root string) ([]byte, error) {
	dir := filepath.Join(root, "usr/share/ca-certificates")
	var files []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(p, ".crt") {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("CA certificates: %w", err)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no CA certificates under %s", dir)
	}
	slices.Sort(files)
	var buf bytes.Buffer
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		buf.Write(b)
		if !bytes.HasSuffix(b, []byte("\n")) {
			buf.WriteByte('\n')
		}
	}
	return buf.Bytes(), nil
}

// Meta is what the image says about itself.
type Meta struct {
	Version  string // org.opencontainers.image.version
	Revision string // org.opencontainers.image.revision (the commit)
	Source   string // org.opencontainers.image.source
	// Created is the image's creation time and every file's mtime: the
	// commit's time, so rebuilding one commit gives one digest.
	Created time.Time
	// Entrypoint defaults to the agent (AgentPath).
	Entrypoint []string
	// Title and Description are the OCI labels of those names; default
	// the agent's.
	Title, Description string
}

// Build makes a single-layer linux/amd64 image of the entries whose
// entrypoint is the agent (unless Meta says otherwise).
func Build(entries []Entry, m Meta) (v1.Image, error) {
	if len(m.Entrypoint) == 0 {
		m.Entrypoint = []string{AgentPath}
	}
	m.Title = cmp.Or(m.Title, "edgeagent")
	m.Description = cmp.Or(m.Description, "Edge node agent: BGP with Calico, LBRoute VIPs and load balancing, APV driver")
	layerTar, err := Layer(entries, m.Created)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, fmt.Errorf("layer: %w", err)
	}
	img, err := mutate.Append(mutate.MediaType(empty.Image, types.OCIManifestSchema1), mutate.Addendum{
		Layer:     layer,
		MediaType: types.OCILayer,
		History:   v1.History{Created: v1.Time{Time: m.Created}, CreatedBy: "edgeagent hack/image.sh", Comment: "agent, iptables (nft + legacy), CA certificates"},
	})
	if err != nil {
		return nil, err
	}
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Created = v1.Time{Time: m.Created}
	cf.Config = v1.Config{
		Entrypoint: m.Entrypoint,
		Env:        []string{"PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
		Labels: map[string]string{
			"org.opencontainers.image.source":      m.Source,
			"org.opencontainers.image.version":     m.Version,
			"org.opencontainers.image.revision":    m.Revision,
			"org.opencontainers.image.title":       m.Title,
			"org.opencontainers.image.description": m.Description,
			"org.opencontainers.image.licenses":    "Apache-2.0",
			"org.opencontainers.image.created":     m.Created.UTC().Format(time.RFC3339),
		},
	}
	return mutate.ConfigFile(img, cf)
}

// Layer writes the entries as one tar stream: parent directories first,
// every entry owned by root, with the given mtime, in path order.
func Layer(entries []Entry, mtime time.Time) ([]byte, error) {
	dirs := map[string]bool{}
	for _, e := range entries {
		if !path.IsAbs(e.Path) || path.Clean(e.Path) != e.Path {
			return nil, fmt.Errorf("entry path %q: must be absolute and clean", e.Path)
		}
		for d := path.Dir(e.Path); d != "/"; d = path.Dir(d) {
			dirs[d] = true
		}
	}
	type item struct {
		name string
		e    *Entry
	}
	var items []item
	for i := range entries {
		if entries[i].Dir {
			items = append(items, item{name: entries[i].Path[1:] + "/", e: &entries[i]})
			delete(dirs, entries[i].Path)
			continue
		}
		items = append(items, item{name: entries[i].Path[1:], e: &entries[i]})
	}
	for d := range dirs {
		items = append(items, item{name: d[1:] + "/"})
	}
	slices.SortFunc(items, func(a, b item) int {
		return cmp.Compare(strings.TrimSuffix(a.name, "/"), strings.TrimSuffix(b.name, "/"))
	})
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	mtime = mtime.UTC().Truncate(time.Second)
	for i, it := range items {
		if i > 0 && strings.TrimSuffix(items[i-1].name, "/") == strings.TrimSuffix(it.name, "/") {
			return nil, fmt.Errorf("%s is in the image twice", it.name)
		}
		h := &tar.Header{Name: it.name, ModTime: mtime, Format: tar.FormatPAX, Uname: "root", Gname: "root"}
		switch {
		case it.e == nil:
			h.Typeflag, h.Mode = tar.TypeDir, 0o755
		case it.e.Dir:
			h.Typeflag, h.Mode = tar.TypeDir, int64(cmp.Or(it.e.Mode, 0o755))
		case it.e.Link != "":
			h.Typeflag, h.Linkname, h.Mode = tar.TypeSymlink, it.e.Link, 0o777
		default:
			h.Typeflag, h.Mode, h.Size = tar.TypeReg, int64(it.e.Mode.Perm()), int64(len(it.e.Data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write(it.e.Data); err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
