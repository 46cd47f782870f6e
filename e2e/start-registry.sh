#!/usr/bin/env bash
# Start a real OCI registry (Debian's docker-registry, CNCF distribution 2.8) on 127.0.0.1 for
# tests, with TLS from a CA made here and htpasswd (bcrypt) auth, as a real registry demands:
# clients must trust the CA and log in, so a test exercises the same paths as against a
# production registry.
#
#   e2e/start-registry.sh STATE_DIR
#
# Makes in STATE_DIR (on every start: a new CA, certificate and password; data/ is kept):
#   ca.pem ca.key          the CA (EC P-256) clients trust
#   server.pem server.key  the serving certificate for IP:127.0.0.1 and DNS:localhost
#   htpasswd               user spo, a random password (bcrypt)
#   config.yml             the registry's configuration; storage in STATE_DIR/data
# starts `docker-registry serve` in the background (log STATE_DIR/registry.log, pid
# STATE_DIR/registry.pid), waits up to $SPO_REGISTRY_READY_TIMEOUT seconds (default 30) until
# an authenticated GET /v2/ succeeds, writes (mode 0600)
#   STATE_DIR/registry.env          SPO_REGISTRY=127.0.0.1:PORT, SPO_REGISTRY_CA=<ca.pem>,
#                                   SPO_REGISTRY_USER=spo, SPO_REGISTRY_PASSWORD=<password>
#   STATE_DIR/docker-config.json    {"auths":{"127.0.0.1:PORT":{"auth":"<base64 user:pass>"}}}
# and prints
#   registry ready: env=STATE_DIR/registry.env (Ns to ready)
# Env: SPO_REGISTRY_PORT (default: a free one). The registry listens on 127.0.0.1 only.
# Stop it with e2e/stop-registry.sh STATE_DIR.
set -euo pipefail

if [ $# -ne 1 ]; then
  echo "usage: $0 STATE_DIR" >&2
  exit 2
fi
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
mkdir -p "$1"
state="$(cd "$1" && pwd)"
timeout="${SPO_REGISTRY_READY_TIMEOUT:-30}"
log="$state/registry.log"
pidfile="$state/registry.pid"
user=spo
case "${SPO_REGISTRY_PORT:-}" in
  '' | [1-9] | [1-9][0-9] | [1-9][0-9][0-9] | [1-9][0-9][0-9][0-9] | [1-9][0-9][0-9][0-9][0-9]) ;;
  *) echo "SPO_REGISTRY_PORT=$SPO_REGISTRY_PORT is not a port number" >&2; exit 2 ;;
esac

bin="$(command -v docker-registry || true)"
[ -n "$bin" ] || { echo "docker-registry not installed (scripts/setup installs it)" >&2; exit 1; }
for tool in openssl htpasswd curl base64; do
  command -v "$tool" >/dev/null || { echo "$tool not found (scripts/setup installs it)" >&2; exit 1; }
done

# alive = exists and is not a zombie (a killed registry may wait a moment to be reaped)
alive() { [ -r "/proc/$1/stat" ] && ! grep -q '^[0-9]* (.*) Z' "/proc/$1/stat" 2>/dev/null; }
if [ -s "$pidfile" ] && alive "$(cat "$pidfile")"; then
  echo "registry already running for $state (pid $(cat "$pidfile")); run e2e/stop-registry.sh $state first" >&2
  exit 1
fi
# A failed start must not leave the previous run's credentials looking valid.
rm -f "$state/registry.env" "$state/docker-config.json"

# Keys and the password are readable by this user only; the certificates are public.
umask 077
mkdir -p "$state/data"

# The CA. EC P-256: quick to make, accepted by Go's and OpenSSL's TLS alike.
openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
  -keyout "$state/ca.key" -out "$state/ca.pem" -days 30 -subj "/CN=spo test registry CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  2>"$state/openssl.log" || { cat "$state/openssl.log" >&2; exit 1; }
# The serving certificate: SANs for the address clients use (127.0.0.1) and localhost.
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
  -keyout "$state/server.key" -out "$state/server.csr" -subj "/CN=127.0.0.1" \
  2>"$state/openssl.log" || { cat "$state/openssl.log" >&2; exit 1; }
openssl x509 -req -in "$state/server.csr" -CA "$state/ca.pem" -CAkey "$state/ca.key" \
  -set_serial "0x$(openssl rand -hex 16)" -days 30 -out "$state/server.pem" \
  -extfile <(printf '%s\n' \
    "basicConstraints=critical,CA:FALSE" \
    "keyUsage=critical,digitalSignature" \
    "extendedKeyUsage=serverAuth" \
    "subjectKeyIdentifier=hash" \
    "authorityKeyIdentifier=keyid" \
    "subjectAltName=IP:127.0.0.1,DNS:localhost") \
  2>"$state/openssl.log" || { cat "$state/openssl.log" >&2; exit 1; }
rm -f "$state/server.csr" "$state/openssl.log"
chmod 0644 "$state/ca.pem" "$state/server.pem"

# Hex: no character a URL, YAML, JSON or a shell would have to escape.
pass="$(openssl rand -hex 16)"
secret="$(openssl rand -hex 32)"
htpasswd -Bbn "$user" "$pass" >"$state/htpasswd"

# YAML single-quoted scalar (a quote inside is doubled), so any directory name is safe.
yq() { local s="${1//\'/\'\'}"; printf "'%s'" "$s"; }

write_config() {
  cat >"$state/config.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $(yq "$state/data")
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$1
  secret: $secret
  tls:
    certificate: $(yq "$state/server.pem")
    key: $(yq "$state/server.key")
auth:
  htpasswd:
    realm: spo-test-registry
    path: $(yq "$state/htpasswd")
EOF
}

# A free port: bind port 0 where python3 exists (as e2e/start-node.sh does), else probe
# random ports below the ephemeral range with bash's /dev/tcp until one refuses.
free_port() {
  if command -v python3 >/dev/null && python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null; then
    return
  fi
  local p
  for _ in $(seq 1 100); do
    p=$(( 20000 + RANDOM % 12000 ))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
  done
  echo "no free port found" >&2
  return 1
}

# REGISTRY_* variables override config.yml (distribution reads e.g. REGISTRY_HTTP_ADDR), and
# one inherited from the caller could make the registry listen beyond 127.0.0.1.
registry_env=()
while IFS= read -r v; do
  case "$v" in REGISTRY_*) registry_env+=(-u "$v") ;; esac
done < <(compgen -e)

start=$(date +%s%N)
# A port found free can be taken before the registry binds it; then try another (up to 3
# times) unless the caller fixed the port.
for attempt in 1 2 3; do
  port="${SPO_REGISTRY_PORT:-$(free_port)}"
  write_config "$port"
  env "${registry_env[@]}" "$bin" serve "$state/config.yml" </dev/null >"$log" 2>&1 &
  pid=$!
  echo "$pid" >"$pidfile"
  url="https://127.0.0.1:$port/v2/"
  t0=$(date +%s)
  while :; do
    if curl -fsS --max-time 2 --cacert "$state/ca.pem" -u "$user:$pass" -o /dev/null "$url" 2>/dev/null; then
      break 2
    fi
    if ! alive "$pid"; then
      rm -f "$pidfile"
      if [ -z "${SPO_REGISTRY_PORT:-}" ] && [ "$attempt" -lt 3 ] && grep -q 'address already in use' "$log"; then
        echo "port $port was taken before the registry bound it; trying another" >&2
        continue 2
      fi
      echo "registry exited before it was ready; last log lines:" >&2
      tail -n 40 "$log" >&2
      exit 1
    fi
    if [ $(( $(date +%s) - t0 )) -ge "$timeout" ]; then
      echo "registry not ready after ${timeout}s; last log lines:" >&2
      tail -n 40 "$log" >&2
      curl -sS --max-time 2 --cacert "$state/ca.pem" -u "$user:$pass" -o /dev/null "$url" >&2 || true
      "$here/stop-registry.sh" "$state" >&2 || true
      exit 1
    fi
    sleep 0.2
  done
done

auth="$(printf '%s:%s' "$user" "$pass" | base64 -w0)"
# Written under a temporary name and renamed: a reader never sees half a file.
cat >"$state/registry.env.tmp" <<EOF
SPO_REGISTRY=127.0.0.1:$port
SPO_REGISTRY_CA=$state/ca.pem
SPO_REGISTRY_USER=$user
SPO_REGISTRY_PASSWORD=$pass
EOF
printf '{"auths":{"127.0.0.1:%s":{"auth":"%s"}}}\n' "$port" "$auth" >"$state/docker-config.json.tmp"
chmod 0600 "$state/registry.env.tmp" "$state/docker-config.json.tmp"
mv -f "$state/docker-config.json.tmp" "$state/docker-config.json"
mv -f "$state/registry.env.tmp" "$state/registry.env"

ms=$(( ($(date +%s%N) - start) / 1000000 ))
printf 'registry ready: env=%s (%d.%ds to ready)\n' "$state/registry.env" $(( ms / 1000 )) $(( ms % 1000 / 100 ))
echo "(pid $pid, https://127.0.0.1:$port, log $log)" >&2
