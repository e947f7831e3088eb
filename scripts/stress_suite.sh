#!/usr/bin/env bash
# Run the unit suite N times in a row (default 20) with the other core kept busy by a `yes` loop; stop at
# the first failure. Run from the repository root inside the project's environment:
#     bash scripts/stress_suite.sh [N]
# Each run's output goes to stress-logs/run-K.log; one line per run is printed.
set -u
runs=${1:-20}
mkdir -p stress-logs
yes > /dev/null & busy=$!
trap 'kill $busy' EXIT
for i in $(seq 1 "$runs"); do
  start=$(date +%s)
  if python -m pytest -q -p no:cacheprovider > "stress-logs/run-$i.log" 2>&1; then result=ok; else result=FAIL; fi
  echo "run $i: $result $(( $(date +%s) - start ))s $(tail -1 "stress-logs/run-$i.log")"
  [ "$result" = ok ] || exit 1
done
