#!/usr/bin/env bash
# Build a real Gitea from the Go module proxy into a cache directory keyed by version, for the
# tests that read commit statuses back and receive Gitea's own signed push webhooks
# (tests/test_commit_status*.py).
#
#   .ci/gitea-build.sh [OUT]
#
# Default OUT: ${SWARMKEEPER_GITEA_CACHE:-$HOME/.cache/swarmkeeper-gitea}/gitea-<v>
# Idempotent: when the binary is present it returns at once. Progress goes to stderr; the last
# line of stdout is OUT, which holds the binary (OUT/gitea) and its static root (OUT/static:
# templates/ and options/, read at run time since the build has no bindata):
#   GITEA=$(.ci/gitea-build.sh | tail -1)
#
# How: the module zip the proxy serves for code.gitea.io/gitea declares its path as gitea.dev
# and carries replace directives, so neither `go install mod@version` nor a wrapper module can
# use it; it is built as the main module, from a writable copy of its source. The frontend
# (npm) is not built: the tests use the API, git over HTTP and webhooks only.
#
# Cold build on 2 cores: about 6-12 minutes and about 0.5 GB of modules + 1.5 GB of Go build
# cache (GOMODCACHE/GOCACHE stay in their usual places).
set -euo pipefail

GITEA_VERSION=1.27.3  # the newest release the module proxy serves (go directive 1.26.4)

CACHE_ROOT=${SWARMKEEPER_GITEA_CACHE:-$HOME/.cache/swarmkeeper-gitea}
OUT=${1:-$CACHE_ROOT/gitea-$GITEA_VERSION}

present() { [[ -x "$OUT/gitea" && -d "$OUT/static/templates" && -d "$OUT/static/options" ]]; }

if present; then
  (cd "$OUT" && pwd)
  exit 0
fi

log() { echo "gitea-build: $*" >&2; }

if ! command -v go >/dev/null && [[ -x /usr/local/go/bin/go ]]; then
  export PATH="$PATH:/usr/local/go/bin"
fi
command -v go >/dev/null || { log "go is not installed"; exit 1; }
mkdir -p "$CACHE_ROOT" "$OUT"
OUT=$(cd "$OUT" && pwd)

# One build at a time per cache.
exec 9>"$CACHE_ROOT/.build.lock"
if ! flock -n 9; then
  log "waiting for another build in $CACHE_ROOT"
  flock 9
fi
if present; then
  echo "$OUT"
  exit 0
fi

export GOTOOLCHAIN=local GOFLAGS="-mod=mod -buildvcs=false" CGO_ENABLED=0
log "go: $(go version) GOMODCACHE=$(go env GOMODCACHE) GOCACHE=$(go env GOCACHE)"

SRC="$CACHE_ROOT/src/gitea-$GITEA_VERSION"
if [[ ! -f "$SRC/go.mod" ]]; then
  log "downloading code.gitea.io/gitea@v$GITEA_VERSION"
  dir=$(go mod download -json "code.gitea.io/gitea@v$GITEA_VERSION" |
    python3 -c 'import json,sys; d=json.load(sys.stdin); print(d.get("Dir") or sys.exit(d.get("Error")))')
  tmp=$(mktemp -d "$CACHE_ROOT/.src.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  cp -r "$dir/." "$tmp/"
  chmod -R u+w "$tmp"
  mkdir -p "$(dirname "$SRC")"
  rm -rf "$SRC"
  mv "$tmp" "$SRC"
  trap - EXIT
fi

t0=$SECONDS
TAGS="sqlite sqlite_unlock_notify"
log "building gitea $GITEA_VERSION (tags: $TAGS)"
rm -f "$OUT/.gitea.tmp"
(cd "$SRC" && go build -trimpath -tags "$TAGS" \
  -ldflags "-s -w -X main.Version=$GITEA_VERSION -X 'main.Tags=$TAGS'" -o "$OUT/.gitea.tmp" .) >&2
rm -rf "$OUT/static"
mkdir -p "$OUT/static"
cp -r "$SRC/templates" "$SRC/options" "$OUT/static/"
[[ -d "$SRC/public" ]] && cp -r "$SRC/public" "$OUT/static/"
mv -f "$OUT/.gitea.tmp" "$OUT/gitea"
log "built gitea in $((SECONDS - t0))s"
present || { log "the build left $OUT incomplete"; exit 1; }
echo "$OUT"
