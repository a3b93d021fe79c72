#!/usr/bin/env bash
# Runs every registered experiment with the book's hyperparameters, both impls, and writes the
# report (ours beside d2l's published numbers) to benchmarks/REPRODUCTION.md.
# Usage: DIVEKIT_DATA=../shared/data bash benchmarks/reproduce_book.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/book}
experiments=$(divekit list | awk 'NR > 1 {print $1}')
for name in $experiments; do
  for impl in scratch fast; do
    divekit run "$name" --impl "$impl" --out "$out" --no-progress
  done
done
divekit report "$out" > /dev/null
{
  echo "# Reproduction of the book's experiments"
  echo
  echo "Produced by \`bash benchmarks/reproduce_book.sh\` on $(date -u +%Y-%m-%d), $(nproc) CPU cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), torch $(python -c 'import torch; print(torch.__version__)'), seed 0."
  echo "\"builds\" is the spread of d2l's own published builds; \"reached\" means at least as good as the spread's worse end."
  echo
  tail -n +3 "$out/report.md"
} > benchmarks/REPRODUCTION.md.tmp
mv benchmarks/REPRODUCTION.md.tmp benchmarks/REPRODUCTION.md
echo "wrote benchmarks/REPRODUCTION.md"
