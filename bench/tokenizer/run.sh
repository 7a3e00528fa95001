#!/usr/bin/env bash
# bench/tokenizer/run.sh: the error of moonbatch.estimate's input tokens against a real
# tokenizer (gpt-tokenizer, pinned in bench/tokenizer/package-lock.json, installed into
# bench/tokenizer/node_modules) on a sample of varied text (bench/tokenizer/sample.lua).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
export LUA_PATH="$root/lua/?.lua;$root/lua/?/init.lua;;" LUA_CPATH="$root/build/5.4/?.so;;"
[[ -d bench/tokenizer/node_modules/gpt-tokenizer ]] ||
  npm ci --prefix bench/tokenizer --no-audit --no-fund --loglevel=error >&2
sample=$(mktemp --suffix=.jsonl)
trap 'rm -f "$sample"' EXIT
lua5.4 bench/tokenizer/sample.lua "$sample" "${1:-2000}"
real=$(node bench/tokenizer/measure.mjs "$sample" | sed 's/.*tokens=//')
ours=$(lua5.4 -e "print(require('moonbatch').estimate('$sample').input_tokens)")
awk -v r="$real" -v o="$ours" 'BEGIN { printf "tokenizer (o200k_base): %d tokens; moonbatch.estimate: %d tokens; error %+.1f %%\n", r, o, (o - r) / r * 100 }'
