#!/usr/bin/env bash
# The race tests on a loaded machine, RUNS times in a row (default 10), on the
# emulator FIRESTORE_EMULATOR names (default: Google's, the reference). Two busy
# processes spin beside them the whole time, as two other busy workers would.
#   scripts/races-under-load.sh [RUNS] [extra pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-10}
shift || true
export FIRESTORE_EMULATOR=${FIRESTORE_EMULATOR:-google}
spin='while True: pass'
python3 -c "$spin" & one=$!
python3 -c "$spin" & two=$!
trap 'kill $one $two 2>/dev/null || true' EXIT
for run in $(seq 1 "$RUNS"); do
    echo "== run $run of $RUNS (FIRESTORE_EMULATOR=$FIRESTORE_EMULATOR, two busy processes beside)"
    .venv/bin/pytest -q tests/test_races.py "$@"
done
echo "== $RUNS loaded runs in a row green"
