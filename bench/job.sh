#!/usr/bin/env bash
# bench/job.sh: the `job` case of make bench (scripts/bench job): `moonbatch job run` on 100,000
# and 1,000,000 requests through the stand-in (SiliconFlow's dialect, 5,000 requests a shard,
# batches a step every 0.2 s). Measures the client's CPU (user + sys, from GNU time: the load of
# other processes changes it less than the wall time) and its peak RSS, and prints the targets:
# CPU at most 6 s and RSS at most 64 MiB at 1,000,000 requests, CPU per request within 20 % from
# 100,000 to 1,000,000. Exits non-zero when one fails. BENCH_DIR as scripts/bench.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
dir=${BENCH_DIR:-/tmp/moonbatch-bench}/job
lua=lua5.4
key=sk-bench-job-$$
mkdir -p "$dir"
export LUA_PATH="$root/lua/?.lua;$root/lua/?/init.lua;;" LUA_CPATH="$root/build/5.4/?.so;;"
[[ -f build/5.4/moonbatch/store.so ]] || { echo "bench/job.sh: run make first" >&2; exit 1; }

for n in 100000 1000000; do
  [[ -f $dir/in-$n.jsonl ]] || "$lua" bench/job.lua gen "$dir/in-$n.jsonl" "$n"
done

: >"$dir/standin.out"
bin/moonbatch-standin --key "$key" --watch-pid $$ >"$dir/standin.out" 2>"$dir/standin.err" &
standin_pid=$!
trap 'kill -TERM $standin_pid 2>/dev/null || true; wait $standin_pid 2>/dev/null || true' EXIT
host=""
for ((i = 0; i < 150; i++)); do
  host=$(awk '$1 == "control" { sub("/_standin$", "", $2); print $2 }' "$dir/standin.out")
  [[ -n $host ]] && break
  sleep 0.1
done
[[ -n $host ]] || { echo "bench/job.sh: the stand-in did not start" >&2; exit 1; }
curl -sS -o /dev/null -X POST -H 'Content-Type: application/json' -d '{"step_seconds":0.2}' "$host/_standin/config"

declare -A cpu rss wall
for n in 100000 1000000; do
  out=$dir/out-$n.jsonl
  rm -rf "$out" "$out".* "${out%.jsonl}".errors.jsonl
  echo "bench: job: $n requests" >&2
  # the key reaches the command through its environment, never through its arguments
  MOONBATCH_API_KEY=$key MOONBATCH_BASE_URL=$host/siliconflow/v1 MOONBATCH_PROVIDER=siliconflow \
    MOONBATCH_PROGRESS=never /usr/bin/time -f '%U %S %M %e' -o "$dir/time.txt" \
    "$lua" bin/moonbatch job run "$dir/in-$n.jsonl" -o "$out" --interval 0.2 >"$dir/run-$n.txt" 2>&1 ||
    { cat "$dir/run-$n.txt" >&2; exit 1; }
  grep -q "^succeeded: $n$" "$dir/run-$n.txt" || { cat "$dir/run-$n.txt" >&2; exit 1; }
  read -r user sys kib seconds <"$dir/time.txt"
  cpu[$n]=$(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.2f", u + s }')
  rss[$n]=$((kib / 1024))
  wall[$n]=$seconds
done

ratio=$(awk -v a="${cpu[100000]}" -v b="${cpu[1000000]}" 'BEGIN { printf "%.2f", (b / 1000000) / (a / 100000) }')
printf '\n%-10s %10s %10s %10s %14s\n' requests "cpu (s)" "rss (MiB)" "wall (s)" "cpu/request"
for n in 100000 1000000; do
  printf '%-10s %10s %10s %10s %12.2f us\n' "$n" "${cpu[$n]}" "${rss[$n]}" "${wall[$n]}" \
    "$(awk -v c="${cpu[$n]}" -v n="$n" 'BEGIN { print c / n * 1e6 }')"
done
fails=0
check() { # NAME OK
  if [[ $2 == 1 ]]; then printf 'target met:    %s\n' "$1"; else printf 'target missed: %s\n' "$1"; fails=1; fi
}
check "cpu at 1,000,000 requests ${cpu[1000000]} s <= 6 s" "$(awk -v c="${cpu[1000000]}" 'BEGIN { print (c <= 6) ? 1 : 0 }')"
check "peak rss ${rss[1000000]} MiB <= 64 MiB" "$((rss[1000000] <= 64 ? 1 : 0))"
check "cpu per request at 1,000,000 / at 100,000 = $ratio (within 1.20)" \
  "$(awk -v r="$ratio" 'BEGIN { print (r <= 1.2 && r >= 0.8) ? 1 : 0 }')"
exit $fails
