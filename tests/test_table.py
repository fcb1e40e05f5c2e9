"""benchmarks/table.py: the tiny budget fills two cells, a re-run skips them, the markdown."""

import json
import sys
from pathlib import Path

import pytest
import torch

from promix.config import apply_overrides, load_preset
from promix.hardware import bf16_is_fast, cpu_isa, resolve_precision

PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "table.py"
# Imported by name from its folder (as benchmarks/accuracy.py does), so that the worker
# processes of --jobs, which start fresh and receive sys.path, can import it too.
sys.path.insert(0, str(PATH.parent))
import table  # noqa: E402


@pytest.mark.parametrize("budget", sorted(table.BUDGETS))
def test_every_cell_builds_a_valid_config(budget):
    for noise in table.BUDGETS[budget]["noises"]:
        for cell in table.CELLS:
            preset, overrides = table.cell_args(cell, noise, 1, budget)
            cfg = apply_overrides(load_preset(preset), overrides)  # raises on a bad switch
            assert cfg.run.seed == cfg.data.noise_seed == 1
            assert cfg.model.name == "small_cnn"


def test_protocol_hash_ignores_the_seed_and_tracks_the_switches():
    assert table.protocol_hash("promix", "sym50", "cpu") != table.protocol_hash(
        "no-lga", "sym50", "cpu")
    assert table.protocol_hash("promix", "sym50", "cpu") != table.protocol_hash(
        "promix", "sym50", "tiny")
    a = table.command("ce", "sym50", 1, "cpu")
    b = table.command("ce", "sym50", 2, "cpu")
    assert a.startswith("promix train --preset=cifar10-sym50")
    assert a.endswith(" --seed=1 --noise_seed=1") and b.endswith(" --seed=2 --noise_seed=2")
    assert a[:-24] == b[:-24]


@pytest.mark.slow
def test_tiny_grid_runs_skips_and_reports(tmp_path, capsys):
    results, doc, runs = tmp_path / "t.jsonl", tmp_path / "b.md", tmp_path / "runs"
    argv = ["--budget", "tiny", "--only", "ce", "--only", "coteaching", "--seeds", "1",
            "--results", str(results), "--doc", str(doc), "--runs", str(runs)]
    assert table.main(argv) == 0
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    assert [(r["cell"], r["noise"], r["seed"]) for r in rows] == [
        ("ce", "sym50", 1), ("coteaching", "sym50", 1)]
    assert all(0 <= r["test_accuracy"] <= 1 and r["wall_seconds"] > 0 for r in rows)
    assert rows[0]["command"] == table.command("ce", "sym50", 1, "tiny")

    capsys.readouterr()
    assert table.main(argv) == 0  # everything done: nothing runs, nothing is appended
    assert "[1/" not in capsys.readouterr().out
    assert len(results.read_text().splitlines()) == 2
    assert table.main([*argv, "--dry-run"]) == 0
    assert "promix train" not in capsys.readouterr().out

    text = doc.read_text()
    ce = [line for line in text.splitlines() if line.startswith("| ce |")][0]
    assert f"{100 * rows[0]['test_accuracy']:.2f} ± 0.00 (1 seed)" in ce
    promix = [line for line in text.splitlines() if line.startswith("| promix |")][0]
    assert "not run yet" in promix
    assert rows[0]["command"] in text and rows[0]["machine"] in text
    for name in table.ABLATIONS:
        assert f"| {name} |" in text


def test_the_doc_describes_the_protocol_seeds_not_the_subset_run(tmp_path):
    # A session that fills only seed 2 must not rewrite the protocol and commands as seed 2.
    doc = tmp_path / "b.md"
    argv = ["--report", "--seeds", "2", "--results", str(tmp_path / "none.jsonl"),
            "--doc", str(doc)]
    assert table.main(argv) == 0
    text = doc.read_text()
    assert "over seeds 1, 2 " in text
    assert table.shown(table.command("promix", "sym50", 1, "cpu")) in text
    assert table.command("promix", "sym50", 2, "cpu") not in text


def test_a_half_written_line_is_ignored(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps({"cell": "ce"}) + "\n" + '{"cell": "pro')
    assert table.load_results(path) == [{"cell": "ce"}]


@pytest.mark.slow
def test_parallel_jobs_fill_the_same_cells_and_record_the_sharing(tmp_path):
    results, doc = tmp_path / "t.jsonl", tmp_path / "b.md"
    argv = ["--budget", "tiny", "--only", "ce", "--seeds", "1,2", "--jobs", "2",
            "--results", str(results), "--doc", str(doc), "--runs", str(tmp_path / "runs")]
    assert table.main(argv) == 0
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    assert sorted((r["cell"], r["seed"]) for r in rows) == [("ce", 1), ("ce", 2)]
    assert {r["concurrent_jobs"] for r in rows} == {2}
    auto = str(resolve_precision("auto", torch.device("cpu"))).removeprefix("torch.")
    assert {(r["device"], r["precision"]) for r in rows} == {("cpu", auto)}
    ce = [line for line in doc.read_text().splitlines() if line.startswith("| ce |")][0]
    assert "×2)" in ce  # the wall time says two runs shared the machine


def test_noise_filter_limits_the_grid(capsys):
    assert table.main(["--dry-run", "--only", "promix", "--noise", "asym40", "--seeds", "1",
                       "--results", "/nonexistent/r.jsonl"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out == [table.command("promix", "asym40", 1, "cpu")]


@pytest.mark.slow
def test_rho_estimators_report_the_true_clean_fraction(tmp_path, monkeypatch):
    import rho_estimators

    out = tmp_path / "r.json"
    monkeypatch.setattr(sys, "argv", ["rho_estimators.py", "--budget", "tiny", "--seeds", "1",
                                      "--promix-epochs", "1", "--out", str(out)])
    rho_estimators.main()
    record = json.loads(out.read_text())
    rows = record["settings"]["sym50/seed1"]
    assert [r["phase"] for r in rows] == ["warmup", "promix"]  # tiny: 1 warm-up epoch
    truth = rows[0]["truth"]
    # 200 digits, 50% symmetric noise over 10 classes: about 55% of labels are right.
    assert 0.4 < truth["overall"] < 0.7
    assert truth["overall"] == pytest.approx(
        sum(truth["per_class"]) / 10, abs=0.05)  # classes are nearly equal in size
    for name in ("gmm1", "gmm_weight1", "gmm_log1", "gmm_global1", "agree1", "joint1", "gmm2"):
        assert all(0 <= v <= 1 for v in rows[-1][name]["per_class"])
    summary = record["summary"]["sym50"]
    assert summary["truth"]["error"] == 0 and summary["gmm"]["seeds"] == 1
    assert summary["gmm"]["overall"] == pytest.approx(rows[0]["gmm1"]["overall"])


def test_rho_estimators_summary_is_taken_at_the_end_of_the_warm_up():
    import rho_estimators

    def row(epoch, phase, truth, est):
        return {"epoch": epoch, "phase": phase,
                "truth": {"overall": sum(truth) / 2, "per_class": truth},
                "gmm1": {"overall": sum(est) / 2, "per_class": est},
                "gmm2": {"overall": 0.0, "per_class": [0.0, 0.0]}}  # peer 2: not summarized

    settings = {
        "sym50/seed1": [row(0, "warmup", [0.5, 0.7], [0.1, 0.1]),
                        row(1, "warmup", [0.5, 0.7], [0.4, 0.6]),  # the one summarized
                        row(2, "promix", [0.5, 0.7], [0.9, 0.1])],
        "sym50/seed2": [row(0, "warmup", [0.6, 0.4], [0.7, 0.3])],
    }
    s = rho_estimators.summary(settings)["sym50"]
    assert set(s) == {"truth", "gmm"}
    assert s["gmm"]["overall"] == pytest.approx((0.5 + 0.5) / 2)
    assert s["gmm"]["error"] == pytest.approx(((0.5 - 0.6) + (0.5 - 0.5)) / 2)
    assert s["gmm"]["corr"] == pytest.approx(1.0)  # both seeds rank the classes like the truth
    assert rho_estimators.correlation([0.3, 0.3], [0.1, 0.2]) is None


def test_ablation_delta_is_paired_on_the_seeds_both_cells_have():
    """A one-seed variant is compared with ProMix's run on the same seed, not its mean."""
    base = {"by_seed": {1: 66.0, 2: 64.0}, "mean": 65.0}
    variant = {"by_seed": {2: 63.5}, "mean": 63.5}
    assert table.delta(variant, base) == pytest.approx(-0.5)  # not 63.5 - 65.0
    assert table.delta({"by_seed": {3: 70.0}, "mean": 70.0}, base) is None
    assert table.fmt_delta(None, base) == "-"


def test_best_hand_set_rho_is_compared_with_the_baselines_on_the_same_seeds():
    def cell(by_seed):
        vals = list(by_seed.values())
        return {"by_seed": by_seed, "mean": sum(vals) / len(vals), "n": len(vals), "std": 0.0}

    stats = {("rho-0.7", "asym40"): cell({1: 69.0, 2: 67.0}),
             ("ce", "asym40"): cell({1: 64.0, 2: 68.0, 3: 0.0}),
             ("coteaching", "asym40"): cell({3: 50.0})}  # no common seed: not compared
    fixed = [(64.0, "promix"), (68.0, "rho-0.7")]
    lines = table.best_rho_against_baselines(stats, "asym40", fixed)
    assert lines == ["- asym 40%: with the best hand-set ρ (rho-0.7, 2 seeds), ProMix beats ce "
                     "(+2.00), paired by seed."]
    stats["ce", "asym40"] = cell({1: 70.0, 2: 69.0})
    assert "does NOT beat ce (-1.50)" in table.best_rho_against_baselines(stats, "asym40",
                                                                           fixed)[0]
    assert table.best_rho_against_baselines(stats, "asym40", [(70.0, "promix")] + fixed) == []


def test_rows_tell_cpus_of_the_same_name_apart_by_isa():
    # An AVX2-only and an AVX512-BF16 EPYC both call themselves "AMD EPYC"; their rows differ
    # in precision and speed, so the machine string carries the ISA that decides bf16.
    if torch.cuda.is_available():
        pytest.skip("GPU rows name the card")
    isa = cpu_isa()
    assert f"({isa})," in table.host.label()
    assert bf16_is_fast(torch.device("cpu")) == (isa in ("AMX", "AVX512-BF16"))
    row = {"machine": table.host.label(), "precision": "bfloat16", "concurrent_jobs": 2}
    assert table.where(row).endswith(" bf16 ×2")
