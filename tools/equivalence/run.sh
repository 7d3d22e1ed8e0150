#!/usr/bin/env bash
# Replay equivalence: prints the sha256 of the README tour replay and of a large random replay.
# Run before and after a change that must not change behaviour; the sums must match.
# Usage: tools/equivalence/run.sh [path/to/tocsin]   (default target/release/tocsin)
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${1:-target/release/tocsin}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
"$BIN" replay --monitors monitors --metrics tests/data/example.lp \
  --from 2024-05-01T10:00:00Z --to 2024-05-01T10:50:00Z 2>/dev/null > "$TMP/tour.jsonl"
python3 tools/equivalence/gen_random.py 60 8 > "$TMP/random.lp"
"$BIN" replay --monitors tools/equivalence/monitors --scripts scripts --metrics "$TMP/random.lp" \
  --precision s --from 2024-05-01T00:00:00Z --to 2024-05-01T08:30:00Z 2>/dev/null > "$TMP/random.jsonl"
echo "tour    $(wc -l < "$TMP/tour.jsonl") events  $(sha256sum < "$TMP/tour.jsonl" | cut -c1-16)"
echo "random  $(wc -l < "$TMP/random.jsonl") events  $(sha256sum < "$TMP/random.jsonl" | cut -c1-16)"
if [ -n "${KEEP:-}" ]; then cp "$TMP"/*.jsonl "$KEEP"/; fi
