#!/usr/bin/env bash
# Build FerretDB once, then start or stop it on 127.0.0.1 for the MongoDB store tests.
#
# Usage: scripts/ferretdb.sh start|stop
#
# FerretDB (a MongoDB wire-protocol server) runs with its SQLite backend, so it
# needs no other database. `start` prints MONGODB_URL=mongodb://127.0.0.1:PORT/
# for the tests. Environment:
#   FERRETDB_CACHE  build and run directory, outside the repository so later runs
#                   skip the build (default: $HOME/.cache/crawler-ferretdb)
#   FERRETDB_PORT   TCP port on 127.0.0.1 (default: 27018)
#   FERRETDB_RUN_DIR
#                   data, log and PID file of this server (default: the cache);
#                   a second server needs its own, and its own port
#
# Build: `go install github.com/FerretDB/FerretDB/cmd/ferretdb@v1.24.2` produces
# a binary that panics at start, because the module zip lacks the generated
# build/version/version.txt. So this script copies the module's source from the
# Go module cache, writes that file and builds with `go build`.
set -euo pipefail

FERRETDB_MODULE=github.com/FerretDB/FerretDB
FERRETDB_VERSION=v1.24.2
CACHE="${FERRETDB_CACHE:-$HOME/.cache/crawler-ferretdb}"
PORT="${FERRETDB_PORT:-27018}"
HOST=127.0.0.1
START_TIMEOUT_S=30

BIN="$CACHE/bin/ferretdb-$FERRETDB_VERSION"
SOURCE="$CACHE/src/ferretdb-$FERRETDB_VERSION"
RUN_DIR="${FERRETDB_RUN_DIR:-$CACHE}"
DATA="$RUN_DIR/data"
STATE="$RUN_DIR/state"
LOG="$RUN_DIR/ferretdb.log"
PID_FILE="$RUN_DIR/ferretdb.pid"

log() {
    printf '==> %s\n' "$*" >&2
}

build() {
    if [[ -x "$BIN" ]]; then
        return
    fi
    if ! command -v go >/dev/null; then
        echo "go not found: install Go 1.24 or newer (the go.mod of FerretDB v1.24.2 requires it) to build FerretDB $FERRETDB_VERSION" >&2
        exit 1
    fi

    log "Building FerretDB $FERRETDB_VERSION into $BIN (takes about 2 minutes)"
    local module_dir
    module_dir="$(go mod download -json "$FERRETDB_MODULE@$FERRETDB_VERSION" |
        sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
    if [[ -z "$module_dir" || ! -d "$module_dir" ]]; then
        echo "go mod download did not report a source directory for $FERRETDB_MODULE" >&2
        exit 1
    fi

    rm -rf "$SOURCE"
    mkdir -p "$(dirname "$SOURCE")" "$(dirname "$BIN")"
    cp -R "$module_dir" "$SOURCE"
    chmod -R u+w "$SOURCE"
    echo "$FERRETDB_VERSION" >"$SOURCE/build/version/version.txt"

    (cd "$SOURCE" && go build -buildvcs=false -trimpath -o "$BIN.tmp" ./cmd/ferretdb)
    mv -f "$BIN.tmp" "$BIN"
}

running_pid() {
    # Print the PID from the PID file if that process is still alive.
    if [[ -f "$PID_FILE" ]]; then
        local pid
        pid="$(cat "$PID_FILE")"
        if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
            echo "$pid"
        fi
    fi
}

port_open() {
    (exec 3<>"/dev/tcp/$HOST/$PORT") 2>/dev/null
}

start() {
    build

    local pid
    pid="$(running_pid)"
    if [[ -n "$pid" ]]; then
        log "FerretDB is already running with PID $pid"
        echo "MONGODB_URL=mongodb://$HOST:$PORT/"
        return
    fi
    if port_open; then
        echo "port $HOST:$PORT is in use by another process; set FERRETDB_PORT" >&2
        exit 1
    fi

    mkdir -p "$DATA" "$STATE"
    log "Starting FerretDB on $HOST:$PORT, data in $DATA, log in $LOG"
    DO_NOT_TRACK=1 nohup "$BIN" \
        --listen-addr="$HOST:$PORT" \
        --handler=sqlite \
        --sqlite-url="file:$DATA/" \
        --state-dir="$STATE" \
        --telemetry=disable \
        --debug-addr=- \
        --log-level=warn \
        >"$LOG" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$PID_FILE"

    local deadline=$((SECONDS + START_TIMEOUT_S))
    until port_open; do
        if ! kill -0 "$pid" 2>/dev/null; then
            rm -f "$PID_FILE"
            echo "FerretDB exited during start; its log ($LOG) ends with:" >&2
            tail -n 20 "$LOG" >&2
            exit 1
        fi
        if ((SECONDS >= deadline)); then
            kill "$pid" 2>/dev/null || true
            rm -f "$PID_FILE"
            echo "FerretDB did not accept connections on $HOST:$PORT within" \
                "$START_TIMEOUT_S s; see $LOG" >&2
            exit 1
        fi
        sleep 0.2
    done
    log "FerretDB is running with PID $pid"
    echo "MONGODB_URL=mongodb://$HOST:$PORT/"
}

stop() {
    local pid
    pid="$(running_pid)"
    if [[ -z "$pid" ]]; then
        log "FerretDB is not running"
        rm -f "$PID_FILE"
        return
    fi

    kill "$pid"
    for _ in $(seq 50); do
        if ! kill -0 "$pid" 2>/dev/null; then
            break
        fi
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "FerretDB (PID $pid) ignored SIGTERM for 5 s; sending SIGKILL"
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$PID_FILE"
    log "Stopped FerretDB (PID $pid)"
}

case "${1:-}" in
start) start ;;
stop) stop ;;
*)
    echo "usage: $0 start|stop" >&2
    exit 2
    ;;
esac
