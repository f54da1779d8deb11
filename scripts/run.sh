#!/usr/bin/env bash
# `make run`: serve estiba on this host, after scripts/setup.sh. Idempotent.
#
# Starts, each in the foreground of this script's process group, and stops them
# all on Ctrl-C (or when any one of them dies):
#   - a private Redis on 127.0.0.1:$ESTIBA_REDIS_PORT (data in $ESTIBA_STATE/redis)
#   - the private registry (Debian's docker-registry) on 127.0.0.1:5000
#   - the Celery worker for this host (root, queue host.<hostname>, thread pool)
#   - daphne on 127.0.0.1:8000
#   - the Docker-compatible API (scripts/run.d/api.sh): UNIX socket
#     /run/estiba/estiba.sock (root, 0660) and TCP 127.0.0.1:2375 (tokens)
# Before that: busybox:latest when missing, and the admin account
# (ESTIBA_ADMIN_PASSWORD, or a generated password printed once).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
    echo "estiba: run as root (the worker runs containers)" >&2
    exit 1
fi

ESTIBA_STATE=${ESTIBA_STATE:-/var/lib/estiba}
ESTIBA_RUN=${ESTIBA_RUN:-/run/estiba}
ESTIBA_REDIS_PORT=${ESTIBA_REDIS_PORT:-6390}
ESTIBA_REGISTRY_ADDR=${ESTIBA_REGISTRY_ADDR:-127.0.0.1:5000}
ESTIBA_HTTP=${ESTIBA_HTTP:-127.0.0.1:8000}
export ESTIBA_ROOT=${ESTIBA_ROOT:-$ESTIBA_STATE}
export ESTIBA_RUN_DIR=${ESTIBA_RUN_DIR:-$ESTIBA_RUN}
export ESTIBA_STATE_DIR=${ESTIBA_STATE_DIR:-$ESTIBA_STATE}
export ESTIBA_HOSTNAME=${ESTIBA_HOSTNAME:-$(hostname)}
export ESTIBA_REGISTRY=${ESTIBA_REGISTRY:-$ESTIBA_REGISTRY_ADDR}
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:$ESTIBA_REDIS_PORT/0}
export DJANGO_SETTINGS_MODULE=estiba.settings
PY=.venv/bin/python

mkdir -p "$ESTIBA_STATE/redis" "$ESTIBA_STATE/registry" "$ESTIBA_RUN" "$ESTIBA_STATE/log"
chmod 0711 "$ESTIBA_STATE" "$ESTIBA_RUN"

pids=()
stopping=0
stop_all() {
    [ "$stopping" = 1 ] && return
    stopping=1
    echo
    echo "estiba: stopping…"
    # Newest first: api, daphne, worker, registry, redis.
    for (( i=${#pids[@]}-1; i>=0; i-- )); do
        kill -TERM "${pids[$i]}" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    echo "estiba: stopped"
}
trap 'stop_all; exit 0' INT TERM
trap 'stop_all' EXIT

wait_port() {  # host:port, name, pid
    local hp=$1 name=$2 pid=$3
    for _ in $(seq 150); do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "estiba: $name exited at start; see $ESTIBA_STATE/log/$name.log" >&2
            tail -n 20 "$ESTIBA_STATE/log/$name.log" >&2 || true
            exit 1
        fi
        (exec 3<>"/dev/tcp/${hp%:*}/${hp#*:}") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "estiba: $name did not listen on $hp" >&2
    exit 1
}

port_busy() { (exec 3<>"/dev/tcp/${1%:*}/${1#*:}") 2>/dev/null; }

# 1. Redis (private: its own port and directory)
if port_busy "127.0.0.1:$ESTIBA_REDIS_PORT"; then
    echo "estiba: port $ESTIBA_REDIS_PORT is in use (another estiba running?); set ESTIBA_REDIS_PORT" >&2
    exit 1
fi
redis-server --port "$ESTIBA_REDIS_PORT" --bind 127.0.0.1 --dir "$ESTIBA_STATE/redis" \
    --save 60 1 --appendonly no --daemonize no --logfile "$ESTIBA_STATE/log/redis.log" &
pids+=($!)
wait_port "127.0.0.1:$ESTIBA_REDIS_PORT" redis "$!"

# 2. The private registry
cat > "$ESTIBA_STATE/registry/config.yml" <<YAML
version: 0.1
log: {level: warn}
storage: {filesystem: {rootdirectory: $ESTIBA_STATE/registry/data}, delete: {enabled: true}}
http: {addr: $ESTIBA_REGISTRY_ADDR}
YAML
if port_busy "$ESTIBA_REGISTRY_ADDR"; then
    echo "estiba: $ESTIBA_REGISTRY_ADDR is in use; using the registry already there"
else
    docker-registry serve "$ESTIBA_STATE/registry/config.yml" >"$ESTIBA_STATE/log/registry.log" 2>&1 &
    pids+=($!)
    wait_port "$ESTIBA_REGISTRY_ADDR" registry "$!"
fi

# 3. Database, base image, admin account
$PY manage.py migrate --noinput -v 0
$PY manage.py estiba_bootstrap

# 4. The worker for this host (root; a thread pool so long streams never starve short tasks)
ready_key="estiba:host:$ESTIBA_HOSTNAME:ready"  # set after its first reconcile (estiba/projector.py)
redis-cli -p "$ESTIBA_REDIS_PORT" del "$ready_key" >/dev/null
.venv/bin/celery -A estiba worker -P threads -c 64 -Q "host.$ESTIBA_HOSTNAME" \
    -n "estiba@$ESTIBA_HOSTNAME" --loglevel WARNING >"$ESTIBA_STATE/log/worker.log" 2>&1 &
pids+=($!)
worker_pid=$!

# 5. The web server
.venv/bin/daphne -b "${ESTIBA_HTTP%:*}" -p "${ESTIBA_HTTP#*:}" estiba.asgi:application \
    >"$ESTIBA_STATE/log/daphne.log" 2>&1 &
pids+=($!)
wait_port "$ESTIBA_HTTP" daphne "$!"

# 6. More servers: each scripts/run.d/*.sh is sourced here and appends its pids to
#    "pids" (api.sh: the Docker-compatible API, `python -m dockerapi.server`, on
#    $ESTIBA_RUN/estiba.sock and 127.0.0.1:2375).
for hook in scripts/run.d/*.sh; do
    [ -f "$hook" ] || continue
    # shellcheck source=/dev/null
    source "$hook"
done

# 7. Announce the dashboard once the worker has projected the engine into it.
for _ in $(seq 1200); do
    if ! kill -0 "$worker_pid" 2>/dev/null; then
        echo "estiba: the worker exited at start; see $ESTIBA_STATE/log/worker.log" >&2
        tail -n 20 "$ESTIBA_STATE/log/worker.log" >&2 || true
        exit 1
    fi
    [ "$(redis-cli -p "$ESTIBA_REDIS_PORT" exists "$ready_key")" = 1 ] && break
    sleep 0.1
done

echo "estiba: dashboard at http://$ESTIBA_HTTP  (logs in $ESTIBA_STATE/log; Ctrl-C stops everything)"
# Stop everything as soon as one process dies, or on Ctrl-C.
wait -n "${pids[@]}" || true
echo "estiba: a process exited; see $ESTIBA_STATE/log" >&2
exit 1
