#!/usr/bin/env bash
# Start etcd + kube-apiserver on loopback for tests.
#
#   .ci/kube-up.sh [--fresh] [STATE_DIR]  (default /tmp/swarmkeeper-kube)
#   eval "$(.ci/kube-up.sh | tail -1)"    # sets KUBECONFIG
#
# --fresh: when kube-apiserver is not running (this call starts it), etcd starts on an empty data
# directory: a leftover etcd of STATE_DIR is stopped and STATE_DIR/etcd removed, so nothing of an
# earlier run (CRDs, namespaces, custom resources) is carried over. Certificates, token and
# kubeconfig are kept. Without effect when kube-apiserver already runs (its state is in use).
#
# Binaries come from .ci/kube-build.sh (or from $SWARMKEEPER_KUBE_BIN if set).
# Listens on 127.0.0.1 only:
#   etcd client  http://127.0.0.1:${SWARMKEEPER_ETCD_PORT:-23790}  (peer: port+10)
#   apiserver    https://127.0.0.1:${SWARMKEEPER_KUBE_PORT:-16443}
# STATE_DIR holds: pki/ (CA, serving cert, service-account key pair, made with openssl),
# tokens.csv (static token for user "admin" in group "system:masters"), admin.token,
# kubeconfig, etcd/ (data), *.pid, *.log.
# Idempotent: if both are already running and /readyz is ok, it only prints the export line.
# The last line of stdout is:  export KUBECONFIG=<STATE_DIR>/kubeconfig
#
# What this cluster is (and is not):
# - only etcd + kube-apiserver: no kube-controller-manager, no scheduler, no kubelet/nodes.
#   Deployments/ReplicaSets/Jobs never create Pods; Pods stay Pending; Services get a
#   ClusterIP but no endpoints; nothing reconciles status except what the apiserver does.
# - namespace deletion never completes (the namespace controller lives in the
#   controller-manager): a deleted namespace stays "Terminating". Use fresh namespace names.
# - no "default" ServiceAccount is created in new namespaces and no ServiceAccount token
#   Secrets are filled in. Tokens can be minted with `kubectl create token SA -n NS` (the
#   TokenRequest API is served by the apiserver itself). Creating a Pod that uses a
#   ServiceAccount (default: "default") is rejected by the ServiceAccount admission plugin
#   until that ServiceAccount exists: create it first.
# - the "kubernetes" Service in "default" has no endpoints: with a loopback advertise
#   address the apiserver refuses to start unless --endpoint-reconciler-type=none.
# - garbage collection (ownerReferences cascading) does not run.
# - RBAC is enforced (--authorization-mode=Node,RBAC); the admin token is in system:masters.
# - CRDs, status/scale subresources, server-side apply, dry-run, admission webhooks and
#   ValidatingAdmissionPolicy all work (they are part of the apiserver).
set -euo pipefail

FRESH=0
if [[ ${1:-} == --fresh ]]; then
  FRESH=1
  shift
fi
STATE=${1:-/tmp/swarmkeeper-kube}
ETCD_PORT=${SWARMKEEPER_ETCD_PORT:-23790}
ETCD_PEER_PORT=$((ETCD_PORT + 10))
KUBE_PORT=${SWARMKEEPER_KUBE_PORT:-16443}
READY_TIMEOUT=${SWARMKEEPER_KUBE_READY_TIMEOUT:-120}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

log() { echo "kube-up: $*" >&2; }

mkdir -p "$STATE"
STATE=$(cd "$STATE" && pwd)
touch "$STATE/.swarmkeeper-kube"   # marks the directory as ours (kube-down removes it)
exec 9>"$STATE/.lock"                # one kube-up at a time per STATE_DIR
flock 9
PKI="$STATE/pki"
KUBECONFIG_FILE="$STATE/kubeconfig"
SERVER="https://127.0.0.1:$KUBE_PORT"

# alive NAME: the process in NAME.pid is running and is ours (started for this STATE)
alive() {
  local pid
  pid=$(cat "$STATE/$1.pid" 2>/dev/null) || return 1
  [[ -n "$pid" && -r /proc/$pid/cmdline ]] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$STATE" || return 1
}

# running PID: the process exists and is not a zombie
running() {
  local st
  st=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  st=${st##*) }
  [[ ${st:0:1} != Z ]]
}

readyz() {
  [[ -f "$STATE/admin.token" && -f "$PKI/ca.crt" ]] || return 1
  [[ "$(curl -s --max-time 3 --cacert "$PKI/ca.crt" \
        -H "Authorization: Bearer $(cat "$STATE/admin.token")" "$SERVER/readyz" 2>/dev/null)" == ok ]]
}

# Already up and healthy: nothing to do.
if alive etcd && alive kube-apiserver && readyz; then
  log "already running ($SERVER, state in $STATE)"
  echo "export KUBECONFIG=$(printf %q "$KUBECONFIG_FILE")"
  exit 0
fi

if [[ -n "${SWARMKEEPER_KUBE_BIN:-}" ]]; then
  BIN=$SWARMKEEPER_KUBE_BIN
else
  BIN=$("$HERE/kube-build.sh" | tail -1)
fi
for b in etcd kube-apiserver kubectl; do
  [[ -x "$BIN/$b" ]] || { log "missing $BIN/$b"; exit 1; }
done

# ---- credentials ------------------------------------------------------------------
mkdir -p "$PKI"
if [[ ! -f "$PKI/ca.crt" ]]; then
  log "generating CA"
  openssl ecparam -name prime256v1 -genkey -noout -out "$PKI/ca.key" 2>/dev/null
  cat >"$PKI/ca.cnf" <<'EOF'
[req]
distinguished_name = dn
prompt = no
x509_extensions = v3_ca
[dn]
CN = swarmkeeper-test-ca
[v3_ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign, digitalSignature
subjectKeyIdentifier = hash
EOF
  openssl req -x509 -new -key "$PKI/ca.key" -config "$PKI/ca.cnf" -days 3650 -out "$PKI/ca.crt.tmp"
  mv "$PKI/ca.crt.tmp" "$PKI/ca.crt"
  rm -f "$PKI/apiserver.crt"
fi
if [[ ! -f "$PKI/apiserver.crt" ]]; then
  log "generating apiserver serving certificate"
  openssl ecparam -name prime256v1 -genkey -noout -out "$PKI/apiserver.key" 2>/dev/null
  cat >"$PKI/apiserver.cnf" <<'EOF'
[req]
distinguished_name = dn
prompt = no
[dn]
CN = kube-apiserver
[v3_server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost, IP:10.96.0.1, DNS:kubernetes, DNS:kubernetes.default, DNS:kubernetes.default.svc, DNS:kubernetes.default.svc.cluster.local
authorityKeyIdentifier = keyid
EOF
  openssl req -new -key "$PKI/apiserver.key" -config "$PKI/apiserver.cnf" -out "$PKI/apiserver.csr"
  openssl x509 -req -in "$PKI/apiserver.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" \
    -CAcreateserial -days 3650 -extfile "$PKI/apiserver.cnf" -extensions v3_server \
    -out "$PKI/apiserver.crt.tmp" 2>/dev/null
  mv "$PKI/apiserver.crt.tmp" "$PKI/apiserver.crt"
fi
if [[ ! -f "$PKI/sa.pub" ]]; then
  log "generating service-account key pair"
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$PKI/sa.key" 2>/dev/null
  openssl pkey -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub.tmp"
  mv "$PKI/sa.pub.tmp" "$PKI/sa.pub"
fi
chmod 600 "$PKI"/*.key
if [[ ! -f "$STATE/admin.token" ]]; then
  openssl rand -hex 24 >"$STATE/admin.token.tmp"
  mv "$STATE/admin.token.tmp" "$STATE/admin.token"
fi
TOKEN=$(cat "$STATE/admin.token")
echo "$TOKEN,admin,admin-uid,\"system:masters\"" >"$STATE/tokens.csv"
chmod 600 "$STATE/admin.token" "$STATE/tokens.csv"

cat >"$KUBECONFIG_FILE.tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: swarmkeeper-test
  cluster:
    server: $SERVER
    certificate-authority-data: $(base64 -w0 <"$PKI/ca.crt")
users:
- name: admin
  user:
    token: $TOKEN
contexts:
- name: swarmkeeper-test
  context:
    cluster: swarmkeeper-test
    user: admin
    namespace: default
current-context: swarmkeeper-test
EOF
chmod 600 "$KUBECONFIG_FILE.tmp"
mv "$KUBECONFIG_FILE.tmp" "$KUBECONFIG_FILE"

# ---- processes --------------------------------------------------------------------
STARTED=()
# start NAME CMD...: runs CMD detached (own session, no inherited stdio) with pidfile
start() {
  local name=$1; shift
  log "starting $name (log: $STATE/$name.log)"
  setsid "$@" </dev/null >>"$STATE/$name.log" 2>&1 9>&- &
  echo $! >"$STATE/$name.pid"
  STARTED+=("$name")
}

if [[ $FRESH == 1 ]] && ! alive kube-apiserver; then
  if alive etcd; then
    pid=$(cat "$STATE/etcd.pid")
    log "stopping the leftover etcd (pid $pid) to start on empty data"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 150; i++)); do
      running "$pid" || break
      sleep 0.1
    done
    if running "$pid"; then
      kill -KILL "$pid" 2>/dev/null || true
      for ((i = 0; i < 50; i++)); do
        running "$pid" || break
        sleep 0.1
      done
      ! running "$pid" || { log "etcd (pid $pid) does not stop"; exit 1; }
    fi
    rm -f "$STATE/etcd.pid"
  fi
  if [[ -e $STATE/etcd ]]; then
    log "removing the etcd data of an earlier run ($STATE/etcd)"
    rm -rf -- "$STATE/etcd"
  fi
fi

if ! alive etcd; then
  rm -f "$STATE/etcd.pid"
  start etcd "$BIN/etcd" \
    --name swarmkeeper \
    --data-dir "$STATE/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "swarmkeeper=http://127.0.0.1:$ETCD_PEER_PORT" \
    --unsafe-no-fsync \
    --log-level warn
fi

if ! alive kube-apiserver; then
  rm -f "$STATE/kube-apiserver.pid"
  start kube-apiserver "$BIN/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
    --bind-address 127.0.0.1 \
    --advertise-address 127.0.0.1 \
    --secure-port "$KUBE_PORT" \
    --cert-dir "$PKI" \
    --tls-cert-file "$PKI/apiserver.crt" \
    --tls-private-key-file "$PKI/apiserver.key" \
    --client-ca-file "$PKI/ca.crt" \
    --token-auth-file "$STATE/tokens.csv" \
    --authorization-mode Node,RBAC \
    --service-cluster-ip-range 10.96.0.0/12 \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$PKI/sa.pub" \
    --service-account-signing-key-file "$PKI/sa.key" \
    --endpoint-reconciler-type none \
    --allow-privileged=true \
    --profiling=false
fi

# ---- wait for /readyz -------------------------------------------------------------
dump_logs() {
  local n
  for n in etcd kube-apiserver; do
    echo "----- last 30 lines of $STATE/$n.log -----" >&2
    tail -n 30 "$STATE/$n.log" >&2 2>/dev/null || true
  done
}
fail() {
  log "$*"
  dump_logs
  local n pid
  for n in "${STARTED[@]}"; do   # stop what this run started, so a retry starts clean
    pid=$(cat "$STATE/$n.pid" 2>/dev/null) && kill "$pid" 2>/dev/null || true
    rm -f "$STATE/$n.pid"
  done
  exit 1
}

t0=$SECONDS
until readyz; do
  for n in etcd kube-apiserver; do
    alive "$n" || fail "$n exited during startup"
  done
  (( SECONDS - t0 < READY_TIMEOUT )) || fail "kube-apiserver not ready after ${READY_TIMEOUT}s"
  sleep 0.5
done
log "ready in $((SECONDS - t0))s: $SERVER (state in $STATE)"
echo "export KUBECONFIG=$(printf %q "$KUBECONFIG_FILE")"
