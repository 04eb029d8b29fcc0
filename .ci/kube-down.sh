#!/usr/bin/env bash
# Stop the etcd + kube-apiserver started by .ci/kube-up.sh and remove its state dir.
#
#   .ci/kube-down.sh [STATE_DIR]        (default /tmp/swarmkeeper-kube)
set -euo pipefail

STATE=${1:-/tmp/swarmkeeper-kube}
log() { echo "kube-down: $*" >&2; }

if [[ ! -d "$STATE" ]]; then
  log "nothing to do ($STATE does not exist)"
  exit 0
fi
STATE=$(cd "$STATE" && pwd)
if [[ ! -f "$STATE/.swarmkeeper-kube" ]]; then
  log "refusing: $STATE was not made by kube-up.sh (no .swarmkeeper-kube marker)"
  exit 1
fi

# stop NAME: TERM the process in NAME.pid (only if it is ours), KILL after 15 s
stop() {
  local name=$1 pid i
  pid=$(cat "$STATE/$name.pid" 2>/dev/null) || return 0
  if [[ -n "$pid" && -r /proc/$pid/cmdline ]] &&
     tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$STATE"; then
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 150; i++)); do
      [[ -e /proc/$pid ]] || break
      sleep 0.1
    done
    if [[ -e /proc/$pid ]]; then
      log "$name did not stop, killing"
      kill -KILL "$pid" 2>/dev/null || true
      sleep 0.2
    fi
  fi
  rm -f "$STATE/$name.pid"
}

stop kube-apiserver
stop etcd
rm -rf -- "$STATE"
log "removed $STATE"
