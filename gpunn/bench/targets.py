"""The GPU proof's targets, read from one run's files: ``python -m gpunn.bench.targets OUT``.

Reads ``OUT/bench.json`` (``gpunn bench``) and ``OUT/agreement.json`` (``gpunn bench
--agreement``), prints one line per target and writes ``OUT/targets.md``:

- gpunn's fit at least as fast as PyTorch eager on the tiny and medium sizes;
- the large (GEMM-bound) size at 85% or more of cuBLAS: the row's TFLOP/s over cuBLAS's on
  the step's own matmul shapes, measured in the same run (the row's "% of peak");
- peak GPU memory, less the dataset's copy, at most 1.3x what training needs;
- CPU-trained and GPU-trained models agree after save/load across devices.

The numbers are reported, never asserted: the exit status is 0 whatever they are (2 only
when OUT does not exist); a file that is missing, or a row not measured, says so.
"""

from __future__ import annotations

import json
import os
import sys

GOALS = {"speed vs torch": 1.0, "% of cuBLAS": 85.0, "memory / needed": 1.3}


def _read(path: str):
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


def evaluate(bench: dict | None, agreement: dict | None) -> list[dict]:
    """One ``{"target", "where", "value", "goal", "met"}`` per target and gpunn row
    (``met`` None: not measured)."""
    rows = (bench or {}).get("rows", [])
    by_key = {(r["size"], r["device"], r["dtype"], r["impl"]): r for r in rows}
    results = []
    for r in rows:
        if r["impl"] != "gpunn":
            continue
        where = f"{r['size']} {r['device']} {r['dtype']}"
        if r["size"] in ("tiny", "medium"):
            torch = by_key.get((r["size"], r["device"], r["dtype"], "torch"))
            ratio = torch["ms_per_step"] / r["ms_per_step"] if torch else None
            results.append(_result("speed vs torch", where, ratio, ">=", "x"))
        if r["size"] == "large":
            results.append(_result("% of cuBLAS", where, r["pct_of_peak"], ">=", "%",
                                   f"cuBLAS {r['peak_tflops']:.1f} TFLOP/s, gpunn "
                                   f"{r['tflops']:.1f}"))
        if r.get("peak_mem_mb") is not None and r.get("needed_mem_mb"):
            ratio = (r["peak_mem_mb"] - r.get("data_mem_mb", 0.0)) / r["needed_mem_mb"]
            results.append(_result("memory / needed", where, ratio, "<=", "x"))
    if agreement is None:
        results.append({"target": "cpu/gpu agreement", "where": "", "value": "not measured",
                        "goal": "all checks", "met": None})
    else:
        failed = [c["check"] for c in agreement["checks"] if not c["ok"]]
        results.append({"target": "cpu/gpu agreement", "where": f"cpu vs {agreement['device']}",
                        "value": "all checks pass" if not failed else "failed: " +
                        "; ".join(failed), "goal": "all checks", "met": not failed})
    if not rows:
        results.insert(0, {"target": "benchmark", "where": "", "value": "no rows measured",
                           "goal": "", "met": None})
    return results


def _result(target: str, where: str, value, sense: str, unit: str, note: str = "") -> dict:
    goal = GOALS[target]
    met = None if value is None else (value >= goal if sense == ">=" else value <= goal)
    text = "not measured" if value is None else f"{value:.2f}{unit}"
    return {"target": target, "where": where, "value": text + (f" ({note})" if note else ""),
            "goal": f"{sense} {goal:g}{unit}", "met": met}


def markdown(results: list[dict]) -> str:
    lines = ["| target | where | value | goal | met |", "|---|---|---|---|---|"]
    for t in results:
        met = {True: "yes", False: "NO", None: "n/a"}[t["met"]]
        lines.append(f"| {t['target']} | {t['where']} | {t['value']} | {t['goal']} | {met} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    from ..atomic import write_text

    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or not os.path.isdir(argv[0]):
        print("usage: python -m gpunn.bench.targets OUT   (a folder with bench.json and "
              "agreement.json)", file=sys.stderr)
        return 2
    out = argv[0]
    results = evaluate(_read(os.path.join(out, "bench.json")),
                       _read(os.path.join(out, "agreement.json")))
    table = markdown(results)
    print(table)
    write_text(os.path.join(out, "targets.md"), table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
