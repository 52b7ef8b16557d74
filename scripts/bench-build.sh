#!/usr/bin/env bash
# Clean release build of the `backspace` binary at each given commit, one after the other, each
# from `git archive` into a throwaway directory with its own empty target dir (the crates come
# from cargo's download cache; nothing is downloaded when it is warm). Prints, per commit: wall
# time, CPU time (user+sys, less sensitive to other load on the machine), the load average
# before and after, and the binary's size. Usage: scripts/bench-build.sh COMMIT...
set -euo pipefail
cd "$(dirname "$0")/.."
for commit in "$@"; do
  dir="$(mktemp -d /tmp/backspace-bench-build.XXXXXX)"
  git archive "$commit" | tar -x -C "$dir"
  (cd "$dir" && cargo fetch --locked >/dev/null 2>&1)
  load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
  start="$(date +%s.%N)"
  times_file="$dir/times"
  # bash's `times` after the build gives the children's user and system seconds.
  (cd "$dir" && CARGO_TARGET_DIR="$dir/target" cargo build --release --locked --bin backspace \
      >/dev/null 2>&1 && times >"$times_file")
  end="$(date +%s.%N)"
  load_after="$(cut -d' ' -f1-3 /proc/loadavg)"
  cpu="$(tail -1 "$times_file" | awk '{ split($1,u,/[ms]/); split($2,s,/[ms]/); printf "%.0f", u[1]*60+u[2]+s[1]*60+s[2] }')"
  size="$(stat -c %s "$dir/target/release/backspace")"
  printf '%s wall=%.0fs cpu=%ss size=%s bytes (%.1f MiB) load_before=%s load_after=%s\n' \
    "$(git rev-parse --short "$commit")" "$(echo "$end - $start" | bc)" "$cpu" "$size" \
    "$(echo "$size / 1048576" | bc -l)" "$load_before" "$load_after"
  rm -rf "$dir"
done
