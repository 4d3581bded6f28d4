#!/usr/bin/env bash
# `make demo`: the whole product on local defaults. Starts the Firestore
# emulator, migrates a fresh SQLite database, creates the demo logins, seeds
# wallets (some drifted), runs a first reconciliation, then serves the admin
# with a qcluster and the real-time watcher beside it until Ctrl-C (`make
# inject-drift` from another terminal shows a drift found as it happens);
# seed_demo also writes a PayNow settlement statement, which one settlement
# reconciliation imports. Each start is a clean slate: the emulator keeps
# nothing, so neither does the demo database.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=.venv/bin/python
DEMO_DIR=.demo
PORT=${PORT:-8000}
free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
EMULATOR_PORT=${EMULATOR_PORT:-$(free_port)}
# Before anything starts: a taken web port (often a demo still running) would
# otherwise only show once the emulator and a qcluster are already up.
# SO_REUSEADDR as runserver sets it, so a port left in TIME_WAIT counts as free.
port_free='import socket, sys; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("127.0.0.1", int(sys.argv[1])))'
if ! "$PY" -c "$port_free" "$PORT" 2>/dev/null; then
    echo "port $PORT on 127.0.0.1 is in use (another demo still running?); stop it or run: PORT=8001 make demo" >&2
    exit 1
fi

export DEBUG=${DEBUG:-true}
export DATABASE_URL="sqlite:///$PWD/$DEMO_DIR/db.sqlite3"
export GOOGLE_CLOUD_PROJECT=${GOOGLE_CLOUD_PROJECT:-revassure-demo}
export FIRESTORE_EMULATOR_HOST="127.0.0.1:$EMULATOR_PORT"
unset REDIS_URL
# Metrics: web and qcluster share their counters through a directory wiped with
# the demo's; alert email goes to files the banner names.
export PROMETHEUS_MULTIPROC_DIR="$PWD/$DEMO_DIR/metrics"
export METRICS_TOKEN=${METRICS_TOKEN:-$("$PY" -c 'import secrets; print(secrets.token_urlsafe(24))')}
export EMAIL_BACKEND=django.core.mail.backends.filebased.EmailBackend EMAIL_FILE_PATH="$PWD/$DEMO_DIR/mail"
unset EMAIL_URL
export ALERT_EMAILS=${ALERT_EMAILS:-ops@revassure.example}
export ALERT_FROM_EMAIL=${ALERT_FROM_EMAIL:-alerts@revassure.example}
# Admin uploads kept for the workers on this machine's disk (Django's local
# storage; production: REVASSURE_STORAGE=gcs), wiped with the demo's.
export REVASSURE_STORAGE=local MEDIA_ROOT="$PWD/$DEMO_DIR/uploads"
export SITE_URL=${SITE_URL:-http://127.0.0.1:$PORT}  # the links in alerts and inject_drift's output

rm -rf "$DEMO_DIR" && mkdir -p "$DEMO_DIR" "$PROMETHEUS_MULTIPROC_DIR" "$DEMO_DIR/mail"
pids=()
emulator_group=
cleanup() {
    # No `set -e` here: after a Ctrl-C the workers have already had the signal
    # and may be gone, and a `kill` that finds nobody must not end the cleanup
    # before the emulator is stopped (it did: the emulator was left running).
    set +e
    rm -f "$DEMO_DIR/env"
    # The workers and the watcher first, and wait for them (up to 10 s): stopped
    # after the emulator, they went on retrying a Firestore that was gone and one
    # Ctrl-C did not end the demo.
    if [ ${#pids[@]} -gt 0 ]; then
        kill "${pids[@]}" 2>/dev/null
        for _ in $(seq 1 100); do
            alive=0
            for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
            [ $alive = 0 ] && break
            sleep 0.1
        done
        kill -9 "${pids[@]}" 2>/dev/null
    fi
    [ -n "$emulator_group" ] && kill -- "-$emulator_group" 2>/dev/null
    wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

# FIRESTORE_EMULATOR=google runs Google's own emulator (Java) in place of our npm
# launcher; it starts in a process group of its own, stopped whole (its launcher
# is a shell script that starts java).
export FIRESTORE_EMULATOR=${FIRESTORE_EMULATOR:-npm}
setsid "$PY" -m devtools.emulator "$EMULATOR_PORT" >"$DEMO_DIR/emulator.log" 2>&1 &
emulator_group=$!
ready='^ready|Dev App Server is now running'
for _ in $(seq 1 300); do grep -Eq "$ready" "$DEMO_DIR/emulator.log" && break; sleep 0.1; done
grep -Eq "$ready" "$DEMO_DIR/emulator.log" || { cat "$DEMO_DIR/emulator.log"; echo "the $FIRESTORE_EMULATOR Firestore emulator did not start" >&2; exit 1; }

echo "== migrating the demo database"
"$PY" manage.py migrate --noinput >"$DEMO_DIR/migrate.log"
echo "== seeding Firestore ($FIRESTORE_EMULATOR emulator on $FIRESTORE_EMULATOR_HOST, project $GOOGLE_CLOUD_PROJECT)"
"$PY" manage.py seed_demo --wallets "${DEMO_WALLETS:-1000}" --history 29 \
    --statement "$DEMO_DIR/paynow-statement.csv" 2>>"$DEMO_DIR/app.log"
echo "== first reconciliation"
"$PY" manage.py reconcile 2>>"$DEMO_DIR/app.log"
echo "== settlement reconciliation of the seeded PayNow statement"
"$PY" manage.py reconcile_settlement "$DEMO_DIR/paynow-statement.csv" 2>>"$DEMO_DIR/app.log"
"$PY" manage.py verify_reports 2>>"$DEMO_DIR/app.log"
logins=$("$PY" manage.py setup_demo)
# The watcher first: the workers' first alert evaluation finds it started.
"$PY" manage.py watch_ledger >>"$DEMO_DIR/watcher.log" 2>&1 &  # real-time drift (docs/realtime.md)
pids+=($!)
"$PY" manage.py qcluster >>"$DEMO_DIR/qcluster.log" 2>&1 &
pids+=($!)
# The notify cluster: alerts and waiting notices, so a slow receiver never holds a worker
# that applies money (docs/observability.md).
Q_CLUSTER_NAME="${Q_CLUSTER_NAME:-revassure}-notify" "$PY" manage.py qcluster >>"$DEMO_DIR/qcluster-notify.log" 2>&1 &
pids+=($!)
# What `make inject-drift` needs to reach this demo from another terminal (removed at exit).
for name in DEBUG DATABASE_URL GOOGLE_CLOUD_PROJECT FIRESTORE_EMULATOR_HOST PROMETHEUS_MULTIPROC_DIR SITE_URL; do
    printf 'export %s=%q\n' "$name" "${!name}"
done >"$DEMO_DIR/env"

cat <<BANNER

  revassure is up:  http://127.0.0.1:$PORT/admin/
  Reconciliation runs: http://127.0.0.1:$PORT/admin/reconciliation/reconciliationrun/
  Settlement runs:     http://127.0.0.1:$PORT/admin/settlement/settlementrun/

  Logins (new passwords at every start):
$logins

  Metrics: curl -H "Authorization: Bearer $METRICS_TOKEN" http://127.0.0.1:$PORT/metrics
  Alert email (not sent anywhere): $DEMO_DIR/mail/

  A drift as it happens: open http://127.0.0.1:$PORT/admin/ (open breaks, Real-time
  watcher), then in another terminal run
      make inject-drift
  It moves a wallet's points with no ledger entry; the watcher records the
  break within a second, and the command prints it with the pages to look at.

  Logs: $DEMO_DIR/*.log    Stop: Ctrl-C

BANNER
"$PY" manage.py runserver "127.0.0.1:$PORT" --noreload 2>>"$DEMO_DIR/app.log"
