#!/usr/bin/env bash
# Runs `nbit fit` in a real terminal (tmux, COLUMNS wide) and checks what the screen shows while it
# trains: no progress line reaches the width (so none wraps), each epoch keeps one line, and every
# progress line shows the loss once and an ETA. Needs tmux and a build (npm run build).
# Usage: packages/cli/scripts/progress-in-tmux.sh [columns=80]   (NBIT_TMUX_COMMAND replaces the command)
set -euo pipefail
columns="${1:-80}"
cd "$(dirname "$0")/../../.."
command -v tmux >/dev/null || { echo "tmux is not installed (apt-get install -y tmux)"; exit 2; }
session="nbit-progress-$$"
work="$(mktemp -d)"
trap 'tmux kill-session -t "$session" 2>/dev/null || true; rm -rf "$work"' EXIT

command="${NBIT_TMUX_COMMAND:-node packages/cli/dist/bin.js fit --accelerator cpu --max-epochs 2 --batch-size 8 --seed 1}"
tmux new-session -d -s "$session" -x "$columns" -y 20 "$command; echo EXIT=\$?; sleep 60"
fail=0
snapshots=0
while :; do
  # -J joins the rows of a line the terminal wrapped, so a wrapped progress line reads longer than the width.
  tmux capture-pane -p -J -t "$session" | sed 's/[[:space:]]*$//' >"$work/screen"
  snapshots=$((snapshots + 1))
  if grep '^Epoch' "$work/screen" | awk -v w="$columns" 'length($0) >= w { bad = 1 } END { exit !bad }'; then
    echo "FAIL: a progress line is $columns characters or wider (it wraps):"
    grep '^Epoch' "$work/screen"
    fail=1
  fi
  while IFS= read -r line; do
    case "$line" in
      Epoch*)
        [[ "$line" == *" ETA "* ]] || { echo "FAIL: no ETA: $line"; fail=1; }
        [[ "$(grep -o 'loss' <<<"$line" | wc -l)" == 1 ]] || { echo "FAIL: the loss is not shown exactly once: $line"; fail=1; }
        ;;
    esac
  done <"$work/screen"
  grep -q '^EXIT=' "$work/screen" && break
  sleep 0.2
done
sed '/^$/d' "$work/screen"
grep -q '^EXIT=0$' "$work/screen" || { echo "FAIL: nbit fit did not exit with 0"; fail=1; }
for epoch in 1 2; do
  count="$(grep -c "^Epoch $epoch/2 " "$work/screen" || true)"
  [[ "$count" == 1 ]] || { echo "FAIL: epoch $epoch has $count progress lines on the screen (expected 1)"; fail=1; }
done
if [[ "$fail" == 0 ]]; then echo "PASS: $snapshots screens at $columns columns"; else exit 1; fi
