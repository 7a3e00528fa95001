# scripts/tally.sh: the bookkeeping scripts/run-tests and scripts/check-asan share (sourced, not
# run): busted runs each tallied from busted's own results (spec/support/summary_output.lua),
# a tool's verdict (valgrind's, the sanitizers') counted as one failure, one line per run and the
# closing line "N passed, N failed".
# shellcheck shell=bash disable=SC2034  # busted is for the scripts that source this

summary=$(mktemp)
trap 'rm -f "$summary"' EXIT
export MOONBATCH_SUMMARY=$summary
busted=$(command -v busted)
status=0
extra_failed=0
tallies=()

# one busted run; a run that ends without reporting counts as one failure
suite() {
  local title=$1; shift
  local before after start
  before=$(wc -l < "$summary")
  start=$SECONDS
  echo "== $title"
  "$@" || status=1
  after=$(wc -l < "$summary")
  if [ "$after" -eq "$before" ]; then
    echo "!! $title ended without a result" >&2
    extra_failed=$((extra_failed + 1))
    status=1
    tallies+=("$(printf '%-58s no result (%ds)' "$title:" $((SECONDS - start)))")
  else
    tallies+=("$(tail -n +$((before + 1)) "$summary" | awk -v t="$title:" -v s=$((SECONDS - start)) \
      '{ p += $1; f += $2 + $3 } END { printf "%-58s %d passed, %d failed (%ds)\n", t, p, f, s }')")
  fi
}

# verdict TITLE FILE...: a tool's reports, one failure when any of the files is not empty
verdict() {
  local title=$1 found=0 f; shift
  for f in "$@"; do
    [ -s "$f" ] || continue
    [ $found -eq 1 ] || echo "!! $title found errors:" >&2
    found=1
    cat "$f" >&2
  done
  [ $found -eq 1 ] || return 0
  extra_failed=$((extra_failed + 1))
  status=1
  tallies+=("$(printf '%-58s 1 failed' "$title's own verdict:")")
}

# the per-run lines and the closing line; exits with the overall status
finish() {
  echo "== results"
  printf '%s\n' "${tallies[@]}"
  awk -v extra="$extra_failed" '{ p += $1; f += $2 + $3 } END { printf "%d passed, %d failed\n", p, f + extra }' "$summary"
  exit $status
}
