"""Each ablation of benchmarks/table.py, 3 tiny epochs: the switch reaches the code it turns off.

The full method runs once with the same settings, so every check also shows the ablated part
was active without the switch (a check that could never fail would prove nothing).
"""

import importlib.util
import math
from pathlib import Path

import pytest

import promix.selection
import promix.step
import promix.trainer
from promix.config import Config, apply_overrides
from promix.data.load import build_dataset
from promix.schedules import Schedule
from promix.trainer import Trainer

_spec = importlib.util.spec_from_file_location(
    "bench_table", Path(__file__).resolve().parents[1] / "benchmarks" / "table.py")
table = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(table)

TINY = ["--per_class=20", "--epochs=3", "--warmup_epochs=1", "--width=4", "--batch_size=32",
        "--progress=false", "--prior_momentum=auto",
        "--tau=0.15"]  # low enough that MHCS and LGA act on a 3-epoch width-4 net
SPIED = {  # module, function name, which argument to record
    "adjust_logits": (promix.step, 2),  # strength α
    "debiased_probs": (promix.step, 2),  # strength β_pl
    "agreement_candidates": (promix.step, None),
    "gmm_clean": (promix.trainer, None),
    "class_small_loss": (promix.trainer, None),
}


def run(switches: list[str], monkeypatch) -> tuple[Trainer, dict[str, list]]:
    calls = {name: [] for name in SPIED}
    for name, (module, arg) in SPIED.items():
        original = getattr(module, name)

        def spy(*args, _original=original, _name=name, _arg=arg, **kwargs):
            calls[_name].append(args[_arg] if _arg is not None else None)
            return _original(*args, **kwargs)

        monkeypatch.setattr(module, name, spy)
    cfg = apply_overrides(Config(), TINY + switches)
    trainer = Trainer(cfg, build_dataset(cfg.data))
    trainer.fit()
    monkeypatch.undo()
    return trainer, calls


@pytest.fixture(scope="module")
def full():
    with pytest.MonkeyPatch.context() as mp:
        return run([], mp)


def ssl_records(trainer):
    return [r for r in trainer.history if r["phase"] == "promix"]


def check_no_mhcs(trainer, calls, full):
    for r in ssl_records(trainer):
        assert r["selected/mhcs_1"] == r["selected/css_1"]
    assert any(r["selected/mhcs_1"] > r["selected/css_1"] for r in ssl_records(full[0]))


def check_no_pseudo_head(trainer, calls, full):
    for r in ssl_records(trainer):
        assert r["loss/loss_ap_1"] == 0 and "loss/unl_1" not in r
    assert all(r["loss/loss_ap_1"] > 0 for r in ssl_records(full[0]))


def check_no_debias_output(trainer, calls, full):
    assert calls["adjust_logits"] and set(calls["adjust_logits"]) == {0.0}
    assert set(full[1]["adjust_logits"]) == {0.8}


def check_no_debias_pl(trainer, calls, full):
    assert calls["debiased_probs"] and set(calls["debiased_probs"]) == {0.0}
    assert set(full[1]["debiased_probs"]) == {0.8}
    # paper mode decouples λ_u from β_pl: never the faithful mode's forced λ_u = 1 (Q3)
    cfg = trainer.cfg
    lambdas = [trainer.schedule.at(e).lambda_u for e in range(cfg.schedule.epochs)]
    assert max(lambdas) <= cfg.schedule.lambda_u_max
    cfg.schedule.lambda_u_mode = "faithful"
    faithful = Schedule(cfg.schedule, cfg.promix, 0.1, 0.0)
    assert faithful.at(2).lambda_u == 1.0


def check_no_lga(trainer, calls, full):
    assert calls["agreement_candidates"] == []
    assert not any(trainer.schedule.at(e).lga for e in range(trainer.cfg.schedule.epochs))
    assert full[1]["agreement_candidates"]  # the last epoch is in the LGA window


def check_gmm_selection(trainer, calls, full):
    assert calls["gmm_clean"] and calls["class_small_loss"] == []
    uniform = math.ceil(0.5 * 200 / 10) * 10  # CSS: ⌈ρN/C⌉ per class, 10 classes
    assert all(r["selected/css_1"] == uniform for r in ssl_records(full[0]))
    assert any(r["selected/css_1"] != uniform for r in ssl_records(trainer))


CHECKS = {
    "no-mhcs": check_no_mhcs,
    "no-pseudo-head": check_no_pseudo_head,
    "no-debias-output": check_no_debias_output,
    "no-debias-pl": check_no_debias_pl,
    "no-lga": check_no_lga,
    "gmm-selection": check_gmm_selection,
}


def test_every_ablation_has_a_check():
    assert set(CHECKS) == set(table.ABLATIONS)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(table.ABLATIONS))
def test_ablation_switch_takes_effect(name, full, monkeypatch):
    trainer, calls = run(table.ABLATIONS[name], monkeypatch)
    assert all(math.isfinite(v) for r in trainer.history for k, v in r.items()
               if k.startswith("loss/"))
    CHECKS[name](trainer, calls, full)
