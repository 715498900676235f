// Command mkimage writes the agent's container image (package
// internal/image) as a docker-archive tarball (for `ctr images import`,
// `docker load`) and an OCI image layout (for `crane push`, skopeo), and
// prints the digest. hack/image.sh runs it; `make image` runs that.
//
//	mkimage -root DEBROOT -agent bin/edgeagent-static -tag ghcr.io/arraynetworks/edgeagent:v0.2.0 \
//	    -version v0.2.0 -revision COMMIT -created UNIX -tar bin/edgeagent-image.tar -oci bin/edgeagent-oci
package main

import (
	"flag"
	"fmt"
	"os"
	"path"
	"strconv"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/arraynetworks/edgeagent/internal/image"
)

func main() {
	root := flag.String("root", "", "directory where the pinned Debian packages are unpacked")
	agent := flag.String("agent", "", "the static agent binary")
	tag := flag.String("tag", "", "image reference, e.g. ghcr.io/arraynetworks/edgeagent:v0.2.0")
	version := flag.String("version", "", "org.opencontainers.image.version")
	revision := flag.String("revision", "", "org.opencontainers.image.revision")
	source := flag.String("source", "https://github.com/arraynetworks/edgeagent", "org.opencontainers.image.source")
	created := flag.String("created", "0", "creation time and file mtimes, Unix seconds (the commit's time)")
	tarPath := flag.String("tar", "", "docker-archive output")
	ociDir := flag.String("oci", "", "OCI layout output directory (replaced)")
	list := flag.Bool("list", false, "print the image's files")
	single := flag.String("single", "", "instead of the agent's image: an image of this one static binary, at /ENTRYPOINT's path (the test cluster's pause image)")
	entry := flag.String("entrypoint", "/pause", "with -single: where the binary goes and runs from")
	flag.Parse()
	var err error
	if *single != "" {
		err = runSingle(*single, *entry, *tag, *version, *created, *tarPath)
	} else {
		err = run(*root, *agent, *tag, *version, *revision, *source, *created, *tarPath, *ociDir, *list)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "mkimage:", err)
		os.Exit(1)
	}
}

func runSingle(binary, entry, tag, version, created, tarPath string) error {
	secs, err := strconv.ParseInt(created, 10, 64)
	if err != nil {
		return fmt.Errorf("-created %q: %w", created, err)
	}
	ref, err := name.NewTag(tag)
	if err != nil {
		return fmt.Errorf("-tag: %w", err)
	}
	b, err := os.ReadFile(binary)
	if err != nil {
		return err
	}
	img, err := image.Build([]image.Entry{{Path: entry, Mode: 0o755, Data: b}}, image.Meta{
		Version: version, Created: time.Unix(secs, 0), Entrypoint: []string{entry},
		Title: path.Base(entry), Description: "sandbox (pause) image of edgeagent's test cluster",
	})
	if err != nil {
		return err
	}
	if err := tarball.WriteToFile(tarPath, ref, img); err != nil {
		return fmt.Errorf("write %s: %w", tarPath, err)
	}
	d, err := img.Digest()
	if err != nil {
		return err
	}
	fmt.Printf("image %s\ndigest %s\n", ref.Name(), d)
	return nil
}

func run(root, agent, tag, version, revision, source, created, tarPath, ociDir string, list bool) error {
	secs, err := strconv.ParseInt(created, 10, 64)
	if err != nil {
		return fmt.Errorf("-created %q: %w", created, err)
	}
	ref, err := name.NewTag(tag)
	if err != nil {
		return fmt.Errorf("-tag: %w", err)
	}
	files, err := image.Files(root, agent)
	if err != nil {
		return err
	}
	if list {
		for _, f := range files {
			if f.Link != "" {
				fmt.Printf("%s -> %s\n", f.Path, f.Link)
			} else {
				fmt.Printf("%s %o %d\n", f.Path, f.Mode, len(f.Data))
			}
		}
	}
	img, err := image.Build(files, image.Meta{Version: version, Revision: revision, Source: source, Created: time.Unix(secs, 0)})
	if err != nil {
		return err
	}
	if tarPath != "" {
		if err := tarball.WriteToFile(tarPath, ref, img); err != nil {
			return fmt.Errorf("write %s: %w", tarPath, err)
		}
	}
	if ociDir != "" {
		if err := os.RemoveAll(ociDir); err != nil {
			return err
		}
		p, err := layout.Write(ociDir, empty.Index)
		if err != nil {
			return fmt.Errorf("write %s: %w", ociDir, err)
		}
		if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{
			"org.opencontainers.image.ref.name": ref.TagStr(),
			"io.containerd.image.name":          ref.Name(),
		})); err != nil {
			return fmt.Errorf("write %s: %w", ociDir, err)
		}
	}
	d, err := img.Digest()
	if err != nil {
		return err
	}
	ls, err := img.Layers()
	if err != nil {
		return err
	}
	var compressed int64
	for _, l := range ls {
		n, err := l.Size()
		if err != nil {
			return err
		}
		compressed += n
	}
	fmt.Printf("image %s\ndigest %s\nfiles %d\ncompressed %d bytes (%.1f MB)\n", ref.Name(), d, len(files), compressed, float64(compressed)/1e6)
	return nil
}
