"""Mutation testing of ProMix's core: how many single-edit bugs the fast tests catch.

    flock /tmp/promix-bench.lock /work/main/.venv/bin/python benchmarks/mutation.py

mutmut (configured in pyproject.toml [tool.mutmut]) copies the package into mutants/, makes
every single-token change it knows (operators, constants, comparisons, arguments dropped or
set to None, ...) to step.py, selection.py, debias.py, losses.py, mixing.py and the trainer's
selection pass, and runs, for each mutant, the fast tests that reach the mutated function.
A mutant is killed when a test fails (or it times out). Survivors are matched against
benchmarks/mutation_survivors.toml, which says for each why it is equivalent (no input can
tell it apart: left out of the score) or harmless (counted as not killed). The score is
killed / (all - equivalent). Writes benchmarks/results/mutation.json and the generated block
of docs/testing.md, and prints the score.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import tomllib

sys.path.insert(0, str(Path(__file__).resolve().parent))
import docgen  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "mutation.json"
SURVIVORS = ROOT / "benchmarks" / "mutation_survivors.toml"
DOC = ROOT / "docs" / "testing.md"
# The core, and of the trainer only its selection pass (its other methods are the epoch loop).
PATTERNS = [
    "promix.step.*", "promix.selection.*", "promix.debias.*", "promix.losses.*",
    "promix.mixing.*",
    *(f"promix.trainer.xǁTrainerǁ{name}__mutmut_*"
      for name in ("select", "estimate_rho", "last_record", "_quality")),
]
DETECTED = {"killed", "timeout", "segfault"}
STATUS = {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests",
          None: "not checked", 34: "skipped", 36: "timeout", 24: "timeout", -24: "timeout",
          152: "timeout", 255: "timeout", -11: "segfault", -9: "segfault"}
TARGET = 0.90


def run_mutmut(children: int) -> float:
    """A fresh mutmut run over PATTERNS; returns its wall time in seconds."""
    shutil.rmtree(ROOT / "mutants", ignore_errors=True)  # cached verdicts of older tests
    env = os.environ | {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}  # one core per worker
    env.pop("PYTHONPATH", None)  # the tests must import the mutated copy in mutants/
    mutmut = Path(sys.executable).with_name("mutmut")
    start = time.perf_counter()
    subprocess.run([str(mutmut), "run", "--max-children", str(children), *PATTERNS], cwd=ROOT,
                   env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def verdicts() -> dict[str, str]:
    """Mutant name -> status, for the mutants PATTERNS selects."""
    out = {}
    for meta in (ROOT / "mutants" / "promix").glob("*.py.meta"):
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        for name, code in codes.items():
            if any(fnmatch.fnmatch(name, p) for p in PATTERNS):
                out[name] = STATUS.get(code, "suspicious")
    return out


def change(name: str) -> tuple[str, str, str]:
    """(function, removed lines, added lines) of a mutant, from mutmut's diff."""
    from mutmut.mutation.diff_apply import get_diff_for_mutant

    path = Path("promix") / (name.split(".")[1] + ".py")
    cwd = Path.cwd()
    os.chdir(ROOT)
    try:
        diff = get_diff_for_mutant(name, path=path).splitlines()
    finally:
        os.chdir(cwd)
    body = [line for line in diff[2:] if not line.startswith("@@")]
    removed = "\n".join(line[1:].strip() for line in body if line.startswith("-"))
    added = "\n".join(line[1:].strip() for line in body if line.startswith("+"))
    return name.rsplit("__mutmut_", 1)[0], removed, added


def classify(survivors: list[str]) -> list[dict]:
    """Each survivor with its change and, when listed in SURVIVORS, its kind and reason."""
    known = tomllib.loads(SURVIVORS.read_text())["survivor"] if SURVIVORS.exists() else []
    rows = []
    for name in sorted(survivors):
        function, removed, added = change(name)
        match = next((k for k in known if (k["function"], k["removed"].strip(),
                                           k["added"].strip()) == (function, removed, added)),
                     None)
        rows.append({"mutant": name, "function": function, "removed": removed, "added": added,
                     "kind": match["kind"] if match else "unexplained",
                     "why": match["why"] if match else ""})
    return rows


def summarize(status: dict[str, str], rows: list[dict], seconds: float, children: int) -> dict:
    equivalent = sum(r["kind"] == "equivalent" for r in rows)
    detected = sum(s in DETECTED for s in status.values())
    scored = len(status) - equivalent
    per_module = {}
    for module in sorted({n.split(".")[1] for n in status}):
        mine = {n: s for n, s in status.items() if n.split(".")[1] == module}
        eq = sum(r["kind"] == "equivalent" and r["mutant"] in mine for r in rows)
        per_module[module] = {"mutants": len(mine), "equivalent": eq,
                              "detected": sum(s in DETECTED for s in mine.values())}
    return {
        "score": detected / max(scored, 1),
        "target": TARGET,
        "mutants": len(status),
        "equivalent": equivalent,
        "detected": detected,
        "statuses": dict(Counter(status.values())),
        "per_module": per_module,
        "survivors": rows,
        "patterns": PATTERNS,
        "tests": tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mutmut"][
            "pytest_add_cli_args_test_selection"],
        "wall_seconds": round(seconds, 1),
        "workers": children,
        "host": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores "
                "(shared machine)",
    }


def render(result: dict) -> str:
    """The generated block of docs/testing.md."""
    lines = [
        f"Score: **{result['score']:.1%}** of the non-equivalent mutants detected "
        f"({result['detected']} of {result['mutants'] - result['equivalent']}; "
        f"{result['equivalent']} equivalent mutants left out; target {result['target']:.0%}). "
        f"Run time {result['wall_seconds'] / 60:.0f} min with {result['workers']} workers.",
        "",
        "| module | mutants | equivalent | detected | score |",
        "|---|---|---|---|---|",
    ]
    for module, m in result["per_module"].items():
        scored = m["mutants"] - m["equivalent"]
        name = "trainer (selection pass)" if module == "trainer" else module
        lines.append(f"| {name} | {m['mutants']} | {m['equivalent']} | {m['detected']} | "
                     f"{m['detected'] / max(scored, 1):.1%} |")
    lines += ["", "Survivors:", "", "| function | change | kind | why |", "|---|---|---|---|"]
    for r in result["survivors"]:
        fn = r["function"].split(".", 1)[1].replace("xǁ", "").replace("ǁ", ".").replace("x_", "")
        edit = f"`{r['removed']}` → `{r['added']}`".replace("\n", " ").replace("|", "\\|")
        lines.append(f"| {fn} | {edit} | {r['kind']} | {r['why']} |")
    return "\n".join(lines)


def write_doc(block: str) -> None:
    begin, end = "<!-- mutation:begin (benchmarks/mutation.py) -->", "<!-- mutation:end -->"
    docgen.write_section(DOC, block, begin, end)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2, help="mutants tested in parallel")
    parser.add_argument("--report-only", action="store_true",
                        help="re-read the verdicts in mutants/ instead of running mutmut")
    args = parser.parse_args(argv)
    seconds = 0.0
    if args.report_only:
        seconds = json.loads(RESULTS.read_text())["wall_seconds"] if RESULTS.exists() else 0.0
    else:
        seconds = run_mutmut(args.workers)
    status = verdicts()
    rows = classify([n for n, s in status.items() if s not in DETECTED])
    result = summarize(status, rows, seconds, args.workers)
    RESULTS.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    write_doc(render(result))
    unexplained = [r["mutant"] for r in rows if r["kind"] == "unexplained"]
    print(f"mutation score {result['score']:.1%} (target {TARGET:.0%}): {result['detected']} of "
          f"{result['mutants'] - result['equivalent']} detected, {result['equivalent']} "
          f"equivalent, {len(unexplained)} survivors unexplained -> {RESULTS.relative_to(ROOT)}")
    return 0 if result["score"] >= TARGET and not unexplained else 1


if __name__ == "__main__":
    sys.exit(main())
