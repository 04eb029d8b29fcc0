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

# ours NAME: prints the pid in NAME.pid if that process is running and is ours
ours() {
  local pid
  pid=$(cat "$STATE/$1.pid" 2>/dev/null) || return 0
  if [[ -n "$pid" && -r /proc/$pid/cmdline ]] &&
     tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$STATE"; then
    echo "$pid"
  fi
}

# running PID: the process exists and is not a zombie
running() {
  local st
  st=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  st=${st##*) }
  [[ ${st:0:1} != Z ]]
}

# Both are stopped at once (the data is removed anyway): TERM, then KILL after 15 s.
PIDS=()
for name in kube-apiserver etcd; do
  pid=$(ours "$name")
  if [[ -n "$pid" ]]; then
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    PIDS+=("$pid")
  fi
done
for pid in "${PIDS[@]}"; do
  for ((i = 0; i < 150; i++)); do
    running "$pid" || break
    sleep 0.1
  done
  if running "$pid"; then
    log "pid $pid did not stop, killing"
    kill -KILL "$pid" 2>/dev/null || true
    sleep 0.2
  fi
done
rm -rf -- "$STATE"
log "removed $STATE"
