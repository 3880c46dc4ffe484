#!/usr/bin/env bash
# Interleaved before/after timing of fit on the CPU: OLD and NEW are two checkouts (e.g.
# `git worktree add /tmp/old <commit>`); each round runs bench/fit_steps.py in OLD then NEW,
# each in a fresh process importing that checkout's gpunn, and the medians over rounds are
# printed with NEW/OLD ratios.
#   bash bench/compare_checkouts.sh /tmp/old . 10
set -euo pipefail
old="$(cd "$1" && pwd)"; new="$(cd "$2" && pwd)"; rounds="${3:-10}"
script="$(cd "$(dirname "$0")" && pwd)/fit_steps.py"
py="${PYTHON:-python3}"
out="$(mktemp -d)"
for _ in $(seq "$rounds"); do
    PYTHONPATH="$old" "$py" "$script" >> "$out/old.jsonl"
    PYTHONPATH="$new" "$py" "$script" >> "$out/new.jsonl"
done
"$py" - "$out" <<'PY'
import json, statistics, sys
rows = {side: [json.loads(line) for line in open(f"{sys.argv[1]}/{side}.jsonl")]
        for side in ("old", "new")}
for key in rows["old"][0]:
    old = statistics.median(r[key] for r in rows["old"])
    new = statistics.median(r[key] for r in rows["new"])
    print(f"{key:7s} old {old:9.4f} ms/step  new {new:9.4f} ms/step  new/old {new / old:.3f}")
PY
