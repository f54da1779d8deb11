# Sourced by scripts/run.sh (step 6): the Docker-compatible REST API.
#
# `python -m dockerapi.server` (not daphne: dockerapi/http.py says why), one
# process serving two listeners:
#   - the UNIX socket $ESTIBA_API_SOCKET (default $ESTIBA_RUN/estiba.sock,
#     i.e. /run/estiba/estiba.sock), root:root mode 0660 like docker.sock: no
#     token, the caller is root;      docker -H unix:///run/estiba/estiba.sock ps
#   - TCP $ESTIBA_API_TCP (default 127.0.0.1:2375) with the tokens of
#     `estiba login`; '' for none.    estiba login --host tcp://127.0.0.1:2375
# Log in $ESTIBA_STATE/log/api.log. Appends its pid to "pids" so run.sh stops it
# with the rest (Ctrl-C, or when any process dies). Uses run.sh's PY, ESTIBA_RUN,
# ESTIBA_STATE, port_busy and wait_port.

export ESTIBA_API_SOCKET=${ESTIBA_API_SOCKET-$ESTIBA_RUN/estiba.sock}
export ESTIBA_API_TCP=${ESTIBA_API_TCP-127.0.0.1:2375}
export ESTIBA_API_SPOOL=${ESTIBA_API_SPOOL:-$ESTIBA_STATE/api-spool}

if [ -n "$ESTIBA_API_TCP" ] && port_busy "$ESTIBA_API_TCP"; then
    echo "estiba: $ESTIBA_API_TCP is in use (another estiba API?); set ESTIBA_API_TCP ('' for none)" >&2
    exit 1
fi
if [ -n "$ESTIBA_API_SOCKET" ] && [ -S "$ESTIBA_API_SOCKET" ] \
        && curl -s -o /dev/null --max-time 2 --unix-socket "$ESTIBA_API_SOCKET" http://api/_ping; then
    echo "estiba: an API already answers on $ESTIBA_API_SOCKET; set ESTIBA_API_SOCKET" >&2
    exit 1
fi

$PY -m dockerapi.server --socket "$ESTIBA_API_SOCKET" --tcp "$ESTIBA_API_TCP" \
    --socket-mode 660 >"$ESTIBA_STATE/log/api.log" 2>&1 &
pids+=($!)
api_pid=$!
if [ -n "$ESTIBA_API_TCP" ]; then
    wait_port "$ESTIBA_API_TCP" api "$api_pid"
fi
if [ -n "$ESTIBA_API_SOCKET" ]; then
    for _ in $(seq 150); do
        if ! kill -0 "$api_pid" 2>/dev/null; then
            echo "estiba: api exited at start; see $ESTIBA_STATE/log/api.log" >&2
            tail -n 20 "$ESTIBA_STATE/log/api.log" >&2 || true
            exit 1
        fi
        curl -s -o /dev/null --max-time 2 --unix-socket "$ESTIBA_API_SOCKET" http://api/_ping && break
        sleep 0.1
    done
    [ -S "$ESTIBA_API_SOCKET" ] || { echo "estiba: api did not listen on $ESTIBA_API_SOCKET" >&2; exit 1; }
fi
echo "estiba: Docker API on unix://$ESTIBA_API_SOCKET${ESTIBA_API_TCP:+ and tcp://$ESTIBA_API_TCP (tokens: estiba login)}"
