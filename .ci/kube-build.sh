#!/usr/bin/env bash
# Build a real Kubernetes API server and its tools from the Go module proxy into a
# cache directory keyed by version, for tests that need a live apiserver.
#
#   .ci/kube-build.sh [OUT]
#
# Builds kube-apiserver, kubectl, etcd, etcdctl and helm at the pinned versions below.
# Default OUT: ${SWARMKEEPER_KUBE_CACHE:-$HOME/.cache/swarmkeeper-kube}/k8s-<v>-etcd-<v>-helm-<v>
# Idempotent: when every binary is present it returns at once. Progress goes to stderr;
# the last line of stdout is the bin directory:   BIN=$(.ci/kube-build.sh | tail -1)
#
# How: k8s.io/kubernetes cannot be depended on directly (its go.mod requires its staging
# modules at v0.0.0 and points them at ./staging), so a small wrapper module outside the
# repository requires k8s.io/kubernetes and replaces each staging module with its
# published v0.<minor>.<patch>. etcd's server and etcdctl modules carry local replace
# directives (so `go install mod@version` refuses them); they get a wrapper module too, and
# so does helm, to set its version ldflags. Wrapper modules are kept under
# <cache>/src/ with their go.sum; Go's module and build caches stay in their usual places
# (GOMODCACHE/GOCACHE), so a rebuild after wiping the bin directory is quick.
#
# Cold build on 2 cores: about 8-14 minutes (most of it kube-apiserver) and about 1 GB of
# modules + 3.7 GB of Go build cache; after wiping OUT only: about 20-35 s.
set -euo pipefail

K8S_VERSION=1.37.2    # needs Go >= 1.26 (go directive 1.26.0); etcd 3.7 is its tested etcd
ETCD_VERSION=3.7.3    # k8s 1.37 is released against etcd 3.7.0; latest 3.7 patch
HELM_VERSION=3.22.0   # helm 3.22 is built against client-go v0.37 (Kubernetes 1.37)

CACHE_ROOT=${SWARMKEEPER_KUBE_CACHE:-$HOME/.cache/swarmkeeper-kube}
OUT=${1:-$CACHE_ROOT/k8s-$K8S_VERSION-etcd-$ETCD_VERSION-helm-$HELM_VERSION}
BINARIES=(kube-apiserver kubectl etcd etcdctl helm)

all_present() {
  local b
  for b in "${BINARIES[@]}"; do [[ -x "$OUT/$b" ]] || return 1; done
}

# Fast path: nothing to do.
if all_present; then
  (cd "$OUT" && pwd)
  exit 0
fi

log() { echo "kube-build: $*" >&2; }

command -v go >/dev/null || { log "go is not installed"; exit 1; }
mkdir -p "$CACHE_ROOT" "$OUT"
OUT=$(cd "$OUT" && pwd)

# One build at a time per cache.
exec 9>"$CACHE_ROOT/.build.lock"
if ! flock -n 9; then
  log "waiting for another build in $CACHE_ROOT"
  flock 9
fi
if all_present; then
  echo "$OUT"
  exit 0
fi

export GOTOOLCHAIN=local GOFLAGS="-mod=mod -buildvcs=false" CGO_ENABLED=0
# Keep the user's GOPROXY/GOMODCACHE/GOCACHE (default locations are persistent).
SRC_ROOT="$CACHE_ROOT/src"
mkdir -p "$SRC_ROOT"
log "go: $(go version) GOMODCACHE=$(go env GOMODCACHE) GOCACHE=$(go env GOCACHE)"

TMPDIRS=()
cleanup() { local d; for d in "${TMPDIRS[@]}"; do rm -rf "$d"; done; rm -f "$OUT"/.*.tmp; }
trap cleanup EXIT

# wrapper NAME INITFN: sets WDIR to a persistent wrapper module <cache>/src/NAME; creates
# it first (running INITFN inside a fresh module) when it does not exist yet.
wrapper() {
  local name=$1 initfn=$2 tmp
  WDIR="$SRC_ROOT/$name"
  if [[ ! -f "$WDIR/go.mod" ]]; then
    log "resolving modules for $name"
    tmp=$(mktemp -d "$SRC_ROOT/.$name.XXXXXX"); TMPDIRS+=("$tmp")
    (
      cd "$tmp"
      go mod init "kubewrap.local/$name" 2>/dev/null
      go mod edit -go=1.26.0   # not the local Go's patch level; `go get` raises it if needed
      "$initfn"
    ) >&2
    rm -rf "$WDIR"; mv "$tmp" "$WDIR"
  fi
}

# install DIR BIN PKG LDFLAGS: go build PKG inside wrapper DIR into $OUT/BIN (atomic).
install_bin() {
  local dir=$1 bin=$2 pkg=$3 ldflags=$4 t0=$SECONDS
  [[ -x "$OUT/$bin" ]] && return 0
  log "building $bin ($pkg)"
  (cd "$dir" && go build -trimpath -ldflags="$ldflags" -o "$OUT/.$bin.tmp" "$pkg") >&2
  mv -f "$OUT/.$bin.tmp" "$OUT/$bin"
  log "built $bin in $((SECONDS - t0))s"
}

# ---- Kubernetes -------------------------------------------------------------------
KMINOR=$(echo "$K8S_VERSION" | cut -d. -f2)
KPATCH=$(echo "$K8S_VERSION" | cut -d. -f3)
init_k8s() {
  local gomod
  gomod=$(go mod download -json "k8s.io/kubernetes@v$K8S_VERSION" |
    python3 -c 'import json,sys; d=json.load(sys.stdin); print(d.get("GoMod") or sys.exit(d.get("Error")))')
  go mod edit -require="k8s.io/kubernetes@v$K8S_VERSION"
  # every "k8s.io/<m> => ./staging/src/k8s.io/<m>" becomes "k8s.io/<m> => k8s.io/<m> v0.MINOR.PATCH"
  local m
  for m in $(sed -nE 's#^[[:space:]]*(k8s\.io/[A-Za-z0-9._-]+)[[:space:]]+=>[[:space:]]+\./staging/.*#\1#p' "$gomod"); do
    go mod edit -replace="$m=$m@v0.$KMINOR.$KPATCH"
  done
  go get "k8s.io/kubernetes/cmd/kube-apiserver@v$K8S_VERSION" "k8s.io/kubernetes/cmd/kubectl@v$K8S_VERSION"
}
if [[ ! -x "$OUT/kube-apiserver" || ! -x "$OUT/kubectl" ]]; then
  wrapper "k8s-$K8S_VERSION" init_k8s; KDIR=$WDIR
  # Release date of the tag, as the build date (reproducible).
  KDATE=$(cd "$KDIR" && go mod download -json "k8s.io/kubernetes@v$K8S_VERSION" |
    python3 -c 'import json,sys; print(json.load(sys.stdin).get("Time","1970-01-01T00:00:00Z"))')
  KLDF="-s -w"
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    KLDF+=" -X $p.gitVersion=v$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$KMINOR"
    KLDF+=" -X $p.gitTreeState=clean -X $p.buildDate=$KDATE"
  done
  install_bin "$KDIR" kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver "$KLDF"
  install_bin "$KDIR" kubectl k8s.io/kubernetes/cmd/kubectl "$KLDF"
fi

# ---- etcd -------------------------------------------------------------------------
init_etcd() {
  go get "go.etcd.io/etcd/server/v3@v$ETCD_VERSION" "go.etcd.io/etcd/etcdctl/v3@v$ETCD_VERSION"
}
if [[ ! -x "$OUT/etcd" || ! -x "$OUT/etcdctl" ]]; then
  wrapper "etcd-$ETCD_VERSION" init_etcd; EDIR=$WDIR
  install_bin "$EDIR" etcd go.etcd.io/etcd/server/v3 "-s -w"
  install_bin "$EDIR" etcdctl go.etcd.io/etcd/etcdctl/v3 "-s -w"
fi

# ---- helm -------------------------------------------------------------------------
init_helm() {
  go get "helm.sh/helm/v3/cmd/helm@v$HELM_VERSION"
}
if [[ ! -x "$OUT/helm" ]]; then
  wrapper "helm-$HELM_VERSION" init_helm; HDIR=$WDIR
  # helm's default .Capabilities.KubeVersion follows the client-go it is built with
  # (as its Makefile does): client-go v0.X.Y -> Kubernetes 1.X
  HKMINOR=$(cd "$HDIR" && go list -m -f '{{.Version}}' k8s.io/client-go | cut -d. -f2)
  HLDF="-s -w -X helm.sh/helm/v3/internal/version.version=v$HELM_VERSION"
  HLDF+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
  for p in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
    HLDF+=" -X $p.k8sVersionMajor=1 -X $p.k8sVersionMinor=$HKMINOR"
  done
  install_bin "$HDIR" helm helm.sh/helm/v3/cmd/helm "$HLDF"
fi

all_present || { log "some binaries are missing in $OUT"; exit 1; }
log "done: $(cd "$OUT" && ls | tr '\n' ' ')"
echo "$OUT"
