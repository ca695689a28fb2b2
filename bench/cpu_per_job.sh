#!/usr/bin/env bash
# CPU per job, split by process, for N `true` jobs at concurrency 2:
#   - `--local 2`: the manager process (its in-process runners and their children included);
#   - manager + separate `runner -w2` on loopback: the manager, and the runner (its children included);
#   - the children alone: `xargs -P2 sh -c true`, the floor any tool pays.
# Usage: bench/cpu_per_job.sh [TREE] [N]   (TREE: a vico checkout, default this one; N default 2000)
# Run it on a quiet machine; compare trees in the same minute.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tree=$(cd "${1:-$here}" && pwd)
n=${2:-2000}
deno() { bash "$here/scripts/deno" "$@"; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
printf 'true\n%.0s' $(seq "$n") >"$work/jobs.txt"
export VICO_ALLOW_ROOT=1
per_job() { awk -v n="$n" '{ printf "%.2f ms", ($1 + $2) * 1000 / n }' "$1"; }
rate() { awk -v n="$n" '{ printf "%d jobs/s", n / $3 }' "$1"; }
cd "$tree"
/usr/bin/time -f '%U %S %e' -o "$work/local.t" \
  bash "$here/scripts/deno" run -q -P=vico manager.ts --jobs "$work/jobs.txt" --results "$work/r1" --local 2 -q >/dev/null 2>&1
port=$((20000 + RANDOM % 20000))
/usr/bin/time -f '%U %S %e' -o "$work/manager.t" \
  bash "$here/scripts/deno" run -q -P=vico manager.ts --jobs "$work/jobs.txt" --results "$work/r2" --port "$port" -q \
  >/dev/null 2>&1 &
mpid=$!
sleep 1.5
/usr/bin/time -f '%U %S %e' -o "$work/runner.t" \
  bash "$here/scripts/deno" run -q -P=vico runner.ts --manager "127.0.0.1:$port" -w 2 >/dev/null 2>&1
wait "$mpid"
/usr/bin/time -f '%U %S %e' -o "$work/xargs.t" xargs -P2 -n1 sh -c <"$work/jobs.txt" >/dev/null
echo "tree $(git -C "$tree" rev-parse --short HEAD), $n jobs, CPU per job (user+sys):"
echo "  --local 2:           $(per_job "$work/local.t") ($(rate "$work/local.t"))"
echo "  manager (+runner):   $(per_job "$work/manager.t")"
echo "  runner -w2 incl. jobs: $(per_job "$work/runner.t")"
echo "  jobs alone (xargs):  $(per_job "$work/xargs.t") ($(rate "$work/xargs.t"))"
