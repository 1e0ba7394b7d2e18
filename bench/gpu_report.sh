#!/usr/bin/env bash
# Capture `ollamactl gpu list --json` and `ollamactl doctor --json` on this machine (e.g. a GPU box),
# into $OUT when it is set (else the current directory). Run from the repository root.
# Exit status: that of `doctor` (3 when a check fails), or 2 when .venv lacks ollamactl.
set -u
BIN=".venv/bin/ollamactl"
DEST="${OUT:-.}"
if [ ! -x "$BIN" ]; then
    echo "gpu_report: $BIN not found; run 'bash scripts/setup.sh' first (it creates .venv)" >&2
    exit 2
fi
mkdir -p "$DEST"
"$BIN" gpu list --json >"$DEST/gpu_list.json" 2>"$DEST/gpu_list.stderr"
echo "gpu list --json: exit $? -> $DEST/gpu_list.json"
"$BIN" gpu check >"$DEST/gpu_check.txt" 2>&1
echo "gpu check: exit $? -> $DEST/gpu_check.txt"
"$BIN" doctor --json >"$DEST/doctor.json" 2>"$DEST/doctor.stderr"
status=$?
echo "doctor --json: exit $status -> $DEST/doctor.json"
NO_COLOR=1 "$BIN" doctor >"$DEST/doctor.txt" 2>&1
exit "$status"
