#!/usr/bin/env bash
# Postern demo on one machine: two private Dovecots behind postern, on
# loopback ports, ready for curl (or any mail client).
#
#   deploy/demo.sh              install dependencies, build, run
#   deploy/demo.sh --no-build   run with an existing build/postern
#                               (or the binary named by $POSTERN_BIN)
#
# Dovecot "store1": 127.0.0.1:10143 (IMAP), 127.0.0.1:10110 (POP3); users
# alice and bob. Dovecot "imapstore": 127.0.0.1:10144, IMAP only (no POP3
# server); user carol, whose POP3 postern serves itself, translated onto
# IMAP (backends[].pop3_mode: gateway). Password "demo", a few sample
# messages each.
# postern: 9993 IMAPS, 9143 IMAP+STARTTLS, 9995 POP3S, 9110 POP3+STLS.
# State lives in .demo/ (git-ignored). Ctrl-C stops postern and both Dovecots.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
demo="$repo/.demo"
python=/usr/bin/python3
[ -x "$python" ] || python=python3

build=1
for arg in "$@"; do
  case "$arg" in
    --no-build) build=0 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "demo: unknown argument $arg" >&2; exit 2 ;;
  esac
done

if [ "$build" = 1 ]; then
  echo "demo: installing dependencies (deploy/install-deps.sh)"
  deploy/install-deps.sh
  echo "demo: building (Release) into build/"
  cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DPOSTERN_TESTS=OFF -DPOSTERN_BENCH=OFF
  cmake --build build
fi
bin=${POSTERN_BIN:-$repo/build/postern}
if [ ! -x "$bin" ]; then
  echo "demo: no postern binary at $bin (run without --no-build)" >&2
  exit 1
fi

mkdir -p "$demo"

# A previous run that was killed hard may have left postern behind.
if [ -f "$demo/postern.pid" ]; then
  old=$(cat "$demo/postern.pid")
  if [ -n "$old" ] && kill -0 "$old" 2>/dev/null &&
     [ "$(readlink -f "/proc/$old/exe" 2>/dev/null)" = "$(readlink -f "$bin")" ]; then
    echo "demo: stopping postern $old left over from an earlier run"
    kill "$old" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$old" 2>/dev/null || break; sleep 0.2; done
  fi
  rm -f "$demo/postern.pid"
fi
# (testbed.py stops a Dovecot left over in .demo/dovecot or .demo/imapstore
# itself.)

testbed_pids=()
postern_pid=""
cleanup() {
  trap - EXIT INT TERM
  if [ -n "$postern_pid" ] && kill -0 "$postern_pid" 2>/dev/null; then
    kill -TERM "$postern_pid" 2>/dev/null || true
    wait "$postern_pid" 2>/dev/null || true
  fi
  for pid in "${testbed_pids[@]}"; do
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
    fi
  done
  for pid in "${testbed_pids[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  rm -f "$demo/postern.pid"
  echo "demo: stopped postern and both Dovecots"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The Dovecots' and postern's ports must be free (a Dovecot of an earlier run
# in .demo/ is stopped by testbed.py before it binds).
busy=$("$python" - "$demo/dovecot/run/master.pid" "$demo/imapstore/run/master.pid" <<'EOF'
import os, socket, sys

def mine(pidfile):
    try:
        os.kill(int(open(pidfile).read()), 0)
        return True
    except (OSError, ValueError):
        return False

ports = [9993, 9143, 9995, 9110]
ports += [] if mine(sys.argv[1]) else [10143, 10110]
ports += [] if mine(sys.argv[2]) else [10144]
busy = []
for p in ports:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", p))
        except OSError:
            busy.append(str(p))
print(" ".join(busy))
EOF
)
if [ -n "$busy" ]; then
  echo "demo: port(s) $busy on 127.0.0.1 already in use; stop what holds them first" >&2
  exit 1
fi

# start_dovecot NAME DIR ARGS...: a testbed.py Dovecot in the background,
# waited for (30 s at most).
start_dovecot() {
  local name=$1 dir=$2
  shift 2
  rm -f "$demo/$name.ready"
  "$python" deploy/testbed.py dovecot --dir "$dir" --password demo \
    --ready-file "$demo/$name.ready" "$@" > "$demo/$name.log" 2>&1 &
  testbed_pids+=($!)
  local pid=$!
  for _ in $(seq 150); do
    [ -s "$demo/$name.ready" ] && break
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "demo: Dovecot $name did not start:" >&2
      cat "$demo/$name.log" >&2
      exit 1
    fi
    sleep 0.2
  done
  if [ ! -s "$demo/$name.ready" ]; then
    echo "demo: Dovecot $name not ready after 30 s:" >&2
    cat "$demo/$name.log" >&2
    exit 1
  fi
  sed 's/^/  /' "$demo/$name.log"
}

echo "demo: starting Dovecot store1 (127.0.0.1:10143 IMAP, 127.0.0.1:10110 POP3) for alice and bob"
start_dovecot store1 "$demo/dovecot" --imap-port 10143 --pop3-port 10110 --users alice,bob
echo "demo: starting Dovecot imapstore (127.0.0.1:10144 IMAP only, no POP3) for carol"
start_dovecot imapstore "$demo/imapstore" --imap-port 10144 --protocols imap --users carol

"$python" deploy/testbed.py cert --dir "$demo" > /dev/null
# The admin endpoint's bearer token (every route but /healthz and /readyz).
[ -s "$demo/admin.token" ] || (umask 077; head -c 24 /dev/urandom | base64 > "$demo/admin.token")
cat > "$demo/postern.yaml" <<'EOF'
# Written by deploy/demo.sh. Reference: deploy/postern.example.yaml.
hostname: localhost
listeners:
  - { name: imaps, protocol: imap, address: "127.0.0.1:9993", tls: implicit }
  - { name: imap,  protocol: imap, address: "127.0.0.1:9143", tls: starttls }
  - { name: pop3s, protocol: pop3, address: "127.0.0.1:9995", tls: implicit }
  - { name: pop3,  protocol: pop3, address: "127.0.0.1:9110", tls: starttls }
tls:
  certificate: cert.pem      # self-signed, for localhost and 127.0.0.1
  key: cert-key.pem
backends:
  - { name: store1, address: 127.0.0.1, imap_port: 10143, pop3_port: 10110 }
  # IMAP only: POP3 clients of its users are served by postern's
  # POP3-to-IMAP gateway over its IMAP port.
  - { name: imapstore, address: 127.0.0.1, imap_port: 10144, pop3_mode: gateway }
routing:
  default_backend: store1
  users: { carol: imapstore }
timeouts:
  shutdown_grace: 2s         # Ctrl-C: open sessions get 2 s to finish
admin:
  address: 127.0.0.1:9199    # /healthz, /readyz, /metrics, /admin/...
  token_file: admin.token
log:
  level: info
  format: json               # one JSON object per line (text: key=value lines)
EOF
"$bin" --check-config "$demo/postern.yaml"

cat <<EOF

demo: postern is starting. Try, from another terminal (-k: the certificate is self-signed):

  curl -k imaps://127.0.0.1:9993/INBOX -u alice:demo
  curl -k "imaps://127.0.0.1:9993/INBOX;UID=1" -u alice:demo
  curl -k pop3s://127.0.0.1:9995/ -u bob:demo
  curl -k pop3s://127.0.0.1:9995/1 -u bob:demo
  curl --ssl-reqd -k imap://127.0.0.1:9143/INBOX -u carol:demo
  curl --ssl-reqd -k "imap://127.0.0.1:9143/INBOX;UID=2" -u carol:demo
  curl --ssl-reqd -k pop3://127.0.0.1:9110/ -u alice:demo
  openssl s_client -quiet -connect 127.0.0.1:9993     (then: a LOGIN alice demo)

carol's store speaks only IMAP; her POP3 goes through postern's POP3-to-IMAP gateway:

  curl -k pop3s://127.0.0.1:9995/ -u carol:demo
  curl -k pop3s://127.0.0.1:9995/1 -u carol:demo
  curl --ssl-reqd -k pop3://127.0.0.1:9110/2 -u carol:demo
  curl -k pop3s://127.0.0.1:9995/ -u carol:demo -X UIDL
  openssl s_client -quiet -connect 127.0.0.1:9995     (then: USER carol, PASS demo, LIST, TOP 1 0, QUIT)

The admin endpoint (metrics, sessions, reload, drain):

  curl -s 127.0.0.1:9199/readyz
  curl -s -H "Authorization: Bearer \$(cat .demo/admin.token)" 127.0.0.1:9199/metrics | grep postern_logins
  curl -s -H "Authorization: Bearer \$(cat .demo/admin.token)" 127.0.0.1:9199/admin/sessions
  curl -s -X POST -H "Authorization: Bearer \$(cat .demo/admin.token)" 127.0.0.1:9199/admin/reload
  kill -HUP \$(cat .demo/postern.pid)     (reloads .demo/postern.yaml too)

Config: .demo/postern.yaml
Dovecot logs: .demo/dovecot/dovecot.log (alice, bob), .demo/imapstore/dovecot.log (carol)
Ctrl-C stops postern and both Dovecots.

EOF

# postern runs as a child whose log goes to this terminal; Ctrl-C (or
# SIGTERM) reaches this script, whose traps stop postern, then Dovecot.
"$bin" --config "$demo/postern.yaml" &
postern_pid=$!
echo "$postern_pid" > "$demo/postern.pid"
set +e
wait "$postern_pid"
status=$?
set -e
postern_pid=""
echo "demo: postern exited with status $status"
exit "$status"
