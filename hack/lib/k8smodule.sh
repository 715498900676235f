# shellcheck shell=bash
# Sourced by hack/get-apiserver.sh and hack/get-k8s-node.sh.
#
# k8s.io/kubernetes replaces its staging modules (k8s.io/api, k8s.io/client-go,
# ...) with local ./staging paths, which a dependent module cannot see. To
# build its commands from the Go module proxy we write a throwaway module
# whose replace block pins every staging module to the matching v0.X.Y
# release.

# k8s_builder_module DIR VERSION: write DIR/go.mod for k8s.io/kubernetes vVERSION.
k8s_builder_module() {
  local dir=$1 version=$2 modfile staging gover
  mkdir -p "$dir"
  modfile=$(cd "$dir" && go mod download -json "k8s.io/kubernetes@v$version" |
    sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')
  [ -f "$modfile" ] || { echo "no go.mod for k8s.io/kubernetes v$version" >&2; return 1; }
  # Every "k8s.io/x => ./staging/src/k8s.io/x" line names one staging module.
  staging=$(awk '/^replace \(/{blk=1; next} blk && /^\)/{blk=0} blk && $3 ~ /^\.\/staging\// {print $1}' "$modfile")
  [ -n "$staging" ] || { echo "no staging replace block in $modfile" >&2; return 1; }
  gover=$(awk '$1=="go"{print $2; exit}' "$modfile")
  {
    printf 'module edgeagent.local/k8sbuild\n\ngo %s\n\nrequire k8s.io/kubernetes v%s\n\nreplace (\n' "${gover:-1.26.0}" "$version"
    for m in $staging; do printf '\t%s => %s v0.%s\n' "$m" "$m" "${version#1.}"; done
    printf ')\n'
  } > "$dir/go.mod"
}

# k8s_ldflags VERSION: strip, and stamp the version the binaries report.
k8s_ldflags() {
  local version=$1 minor flags p
  minor=$(cut -d. -f2 <<<"$version")
  flags="-s -w"
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    flags+=" -X $p.gitVersion=v$version -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
  done
  echo "$flags"
}
