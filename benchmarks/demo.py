"""Run the README's demo (`promix train`, no arguments) and record what it printed.

    python benchmarks/demo.py            # writes benchmarks/results/demo-<cpu isa>.json

It runs the same command a user types, in a subprocess, so the wall time covers imports and
data loading as well as training; the numbers come from the run's own summary.json, data.json,
noise.json and meta.json, so the file holds exactly what the demo reports. The README quotes
this file (tests/test_docs_numbers.py checks that it does).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout, installed or not

from benchmarks.host import describe  # noqa: E402
from promix.hardware import cpu_isa  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def run_demo(out_dir: Path) -> tuple[Path, float, str]:
    """`promix train --out_dir=OUT`: the demo; its run directory, wall seconds and stdout."""
    env = os.environ | {"PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT),
                                                                  os.environ.get("PYTHONPATH")]))}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "promix", "train", f"--out_dir={out_dir}"],
                          capture_output=True, text=True, check=True, env=env)
    seconds = time.perf_counter() - start
    (run_dir,) = [p for p in out_dir.iterdir() if p.is_dir()]
    return run_dir, seconds, proc.stdout


def row(summary: dict) -> dict:
    """One method's line of the demo's table, in fractions and seconds."""
    sel = summary.get("selection") or {}
    return {"method": summary["method"], "test_accuracy": summary["test_accuracy"],
            "best_test_accuracy": summary["best_test_accuracy"],
            "selection_precision": sel.get("precision"), "selection_recall": sel.get("recall"),
            "train_seconds": round(summary["seconds"], 1), "epochs": summary["epochs"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, help="default: results/demo-<cpu isa>.json")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        run_dir, seconds, stdout = run_demo(Path(tmp))
        read = lambda name: json.loads((run_dir / name).read_text())  # noqa: E731
        summary, data, noise, meta = (read(n) for n in
                                      ("summary.json", "data.json", "noise.json", "meta.json"))
    record = {
        "command": "promix train",
        "dataset": data["name"], "train_size": data["train_size"],
        "test_size": data["test_size"],
        # the noise's kind, rate, seed and realized rate (the run keeps its transition matrix)
        "noise": {k: noise[k] for k in ("kind", "rate", "seed", "realized_rate")},
        "seed": meta["seed"], "precision": meta["precision"],
        "methods": [row(summary)] + ([row(summary["baseline"])] if summary["baseline"] else []),
        "command_seconds": round(seconds, 1),
        "stdout": stdout.splitlines(),
        "host": describe(),
        "note": "2-core machine shared with other jobs: seconds are indicative",
    }
    out = args.out or RESULTS / f"demo-{cpu_isa().lower().replace('-', '')}.json"
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
