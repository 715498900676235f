package image

import (
	"archive/tar"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/arraynetworks/edgeagent/internal/apiservertest"
	"github.com/arraynetworks/edgeagent/internal/testns"
	"github.com/arraynetworks/edgeagent/internal/testreq"
)

var created = time.Unix(1764547200, 0)

func sample() []Entry {
	return []Entry{
		{Path: "/usr/sbin/b", Mode: 0o755, Data: []byte("binary")},
		{Path: "/usr/sbin/a", Link: "b"},
		{Path: "/etc/ssl/certs/ca-certificates.crt", Mode: 0o644, Data: []byte("certs\n")},
	}
}

// The same entries give the same bytes and the same digest, whatever
// their order; parent directories are there, owned by root, with the
// given time.
func TestBuildIsReproducible(t *testing.T) {
	m := Meta{Version: "v1.2.3", Revision: "abc", Source: "https://example.com/x", Created: created}
	a, err := Build(sample(), m)
	if err != nil {
		t.Fatal(err)
	}
	rev := sample()
	slices.Reverse(rev)
	b, err := Build(rev, m)
	if err != nil {
		t.Fatal(err)
	}
	da, _ := a.Digest()
	db, _ := b.Digest()
	if da != db {
		t.Fatalf("digests differ: %s vs %s", da, db)
	}
	m.Created = created.Add(time.Second)
	c, _ := Build(sample(), m)
	if dc, _ := c.Digest(); dc == da {
		t.Fatal("a different creation time must give a different digest")
	}

	cf, err := a.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{
		"org.opencontainers.image.version": "v1.2.3", "org.opencontainers.image.revision": "abc",
		"org.opencontainers.image.source": "https://example.com/x",
	} {
		if cf.Config.Labels[k] != v {
			t.Errorf("label %s = %q, want %q", k, cf.Config.Labels[k], v)
		}
	}
	if !slices.Equal(cf.Config.Entrypoint, []string{AgentPath}) || cf.OS != "linux" || cf.Architecture != "amd64" || !cf.Created.Equal(created) {
		t.Errorf("config %+v", cf)
	}

	var names []string
	r := mutate.Extract(a)
	defer r.Close()
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Uid != 0 || h.Gid != 0 || !h.ModTime.Equal(created) {
			t.Errorf("%s: uid %d gid %d mtime %v", h.Name, h.Uid, h.Gid, h.ModTime)
		}
		names = append(names, h.Name)
	}
	want := []string{"etc", "etc/ssl", "etc/ssl/certs", "etc/ssl/certs/ca-certificates.crt", "usr", "usr/sbin", "usr/sbin/a", "usr/sbin/b"}
	if !slices.Equal(names, want) {
		t.Fatalf("layer holds %v, want %v", names, want)
	}
}

func TestLayerRefusesBadPaths(t *testing.T) {
	for _, e := range [][]Entry{
		{{Path: "usr/x", Data: []byte("x")}},
		{{Path: "/usr/../x", Data: []byte("x")}},
		{{Path: "/x", Data: []byte("x")}, {Path: "/x", Data: []byte("y")}},
	} {
		if _, err := Layer(e, created); err == nil {
			t.Errorf("Layer(%v) accepted", e)
		}
	}
}

func TestFilesRefusesDynamicAgent(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		testreq.Missing(t, "no sh to stand in for a dynamically linked binary")
	}
	if _, err := Files(t.TempDir(), sh); err == nil || !strings.Contains(err.Error(), "CGO_ENABLED=0") {
		t.Fatalf("a dynamically linked agent must be refused, got %v", err)
	}
}

// The image `make image` built (bin/edgeagent-image.tar) works: unpacked
// into a directory and entered with chroot in a fresh network namespace,
// both iptables backends load their libraries and extensions and program
// the kernel, the agent runs, and the CA bundle parses.
func TestBuiltImageRuns(t *testing.T) {
	testns.RequireRoot(t)
	tarPath := filepath.Join(apiservertest.RepoRoot(), "bin", "edgeagent-image.tar")
	if _, err := os.Stat(tarPath); err != nil {
		testreq.Missing(t, "%s is missing: run make image (make test does)", tarPath)
	}
	img, err := tarball.ImageFromPath(tarPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	manifest, err := tarball.LoadManifest(func() (io.ReadCloser, error) { return os.Open(tarPath) })
	if err != nil || len(manifest) != 1 || len(manifest[0].RepoTags) != 1 {
		t.Fatalf("docker-archive manifest %+v: %v", manifest, err)
	}
	if ref, err := name.NewTag(manifest[0].RepoTags[0]); err != nil || ref.RepositoryStr() != "arraynetworks/edgeagent" {
		t.Fatalf("tag %q: %v", manifest[0].RepoTags[0], err)
	}
	root := t.TempDir()
	if err := unpack(img, root); err != nil {
		t.Fatal(err)
	}
	ns := testns.New(t, "img")
	run := func(stdin string, args ...string) string {
		t.Helper()
		cmd := exec.Command("ip", append([]string{"netns", "exec", ns.Name, "chroot", root}, args...)...)
		cmd.Stdin = strings.NewReader(stdin)
		cmd.Env = []string{"PATH=/usr/local/bin:/usr/sbin:/usr/bin"}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%v in the image: %v\n%s", args, err, out)
		}
		return string(out)
	}
	if out := run("", "/usr/local/bin/edgeagent", "version"); !strings.HasPrefix(out, "edgeagent ") {
		t.Fatalf("edgeagent version: %q", out)
	}
	rules := "*nat\n:EDGE-IMAGE - [0:0]\n-A EDGE-IMAGE -p tcp -m statistic --mode nth --every 2 --packet 0 -j DNAT --to-destination 10.1.2.3:80\nCOMMIT\n"
	for _, mode := range []string{"nft", "legacy"} {
		run(rules, "iptables-"+mode+"-restore", "--noflush")
		if out := run("", "iptables-"+mode+"-save", "-t", "nat"); !strings.Contains(out, "-A EDGE-IMAGE") || !strings.Contains(out, "--to-destination 10.1.2.3:80") {
			t.Fatalf("iptables-%s-save after a restore:\n%s", mode, out)
		}
		if out := run("", "iptables-"+mode, "--version"); !strings.Contains(out, "v1.8.9") {
			t.Fatalf("iptables-%s --version: %q", mode, out)
		}
	}
	// The host's own tools see what the image's wrote: same kernel API.
	if out := ns.MustRun("iptables-legacy-save", "-t", "nat"); !strings.Contains(out, "EDGE-IMAGE") {
		t.Fatalf("the host's iptables-legacy does not see the image's chain:\n%s", out)
	}
	pemData, err := os.ReadFile(filepath.Join(root, CABundle))
	if err != nil {
		t.Fatal(err)
	}
	pool, n := x509.NewCertPool(), 0
	for rest := pemData; ; {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		n++
	}
	if !pool.AppendCertsFromPEM(pemData) || n < 100 {
		t.Fatalf("CA bundle: %d certificates", n)
	}
	if _, err := os.Stat(filepath.Join(root, "bin/sh")); err == nil {
		t.Fatal("the image has a shell: nothing a user does not need")
	}
}

// unpack writes the image's flattened file system into dir.
func unpack(img v1.Image, dir string) error {
	r := mutate.Extract(img)
	defer r.Close()
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		p := filepath.Join(dir, h.Name)
		switch h.Typeflag {
		case tar.TypeDir:
			err = os.MkdirAll(p, 0o755)
		case tar.TypeSymlink:
			err = os.Symlink(h.Linkname, p)
		case tar.TypeReg:
			var b []byte
			if b, err = io.ReadAll(tr); err == nil {
				err = os.WriteFile(p, b, os.FileMode(h.Mode))
			}
		}
		if err != nil {
			return err
		}
	}
}
