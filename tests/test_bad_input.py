"""Bad input is refused early: one line on stderr, exit code 2, no user file touched and no
run directory left behind. One table, through the real CLI entry point (in process, so the
table runs in seconds; one case checks the exit code of `python -m promix` itself)."""

import hashlib
import json
from pathlib import Path

import command
import numpy as np
import pytest
import torch
from PIL import Image

import promix
from promix.cli import main
from promix.config import ConfigError, load_preset, to_dict
from promix.data.base import DataError

CUDA = torch.cuda.is_available()
CACHE = "--cache_dir=../decoded-cache"  # outside the user's folders (the fixture's tmp_path)


@pytest.fixture
def env(tmp_path, monkeypatch):
    """A working folder with the user's data: images/ (3 classes x 4 PNGs), broken/ (one
    corrupt file), empty/, a CSV with an unknown file, a run directory whose model file is
    corrupt, and one with no model at all."""
    tmp_path = tmp_path / "user"
    tmp_path.mkdir()
    monkeypatch.chdir(tmp_path)
    for k, name in enumerate(("ant", "bee", "cat")):
        for i in range(4):
            path = tmp_path / "images" / name / f"{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (8, 8), (60 * k, 20 * i, 9)).save(path)
    broken = tmp_path / "broken"
    for name in ("ant", "bee"):
        (broken / name).mkdir(parents=True)
        Image.new("L", (8, 8), 3).save(broken / name / "ok.png")
    (broken / "bee" / "bad.png").write_bytes(b"\x89PNG not really")
    (tmp_path / "empty").mkdir()
    (tmp_path / "list.csv").write_text("path,label\nimages/ant/0.png,ant\nmissing.png,bee\n")
    cfg = to_dict(load_preset("demo"))
    for name, model in (("corrupt", b"\x00garbage, not safetensors"), ("nomodel", None)):
        run = tmp_path / name
        run.mkdir()
        (run / "config.json").write_text(json.dumps(cfg))
        (run / "data.json").write_text(json.dumps({
            "name": "digits", "classes": [str(i) for i in range(10)], "image_shape": [1, 8, 8],
            "mean": [0.3], "std": [0.3], "train_size": 1, "test_size": 1}))
        if model is not None:
            (run / "model.safetensors").write_bytes(model)
    (tmp_path / "badconfig").mkdir()
    (tmp_path / "badconfig" / "config.json").write_text('{"data": {"dataset": "dig')
    return tmp_path


def snapshot(root: Path) -> dict:
    """Content hash of every file and the list of folders: what the user has."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            if p.is_file() else "dir" for p in sorted(root.rglob("*"))}


TRAIN = ["train", "--out_dir=out", "--progress=false"]
# (arguments, expected message): each must fail before any file is written.
CASES = [
    (["--tau=2"], "promix.tau=2.0 is out of range: expected float in [0, 1]"),
    (["--tau", "2"], "promix.tau=2.0 is out of range"),
    (["--tau=nan"], "promix.tau=nan is out of range"),
    (["--epochs=0"], "schedule.epochs=0 is out of range: expected int >= 1"),
    (["--epochs=-1"], "schedule.epochs=-1 is out of range"),
    (["--epochs", "-1"], "schedule.epochs=-1 is out of range"),
    (["--epochs=ten"], "schedule.epochs='ten': expected int >= 1"),
    (["--epochs=2.5"], "expected int"),
    (["--epochs"], "'--epochs' needs a value: --key=value or --key value"),
    (["--lr=-0.1"], "optim.lr=-0.1 is out of range: expected float > 0"),
    (["--lr=0"], "optim.lr=0.0 is out of range"),
    (["--lr=inf"], "optim.lr=inf is out of range"),
    (["--model.name=resnet50"], "model.name='resnet50' is not a registered model; did you mean"),
    (["--noise=gaussian"], "data.noise='gaussian' is not one of: none, clean, sym"),
    (["--method=dividemix"], "run.method='dividemix' is not one of: promix, ce, coteaching"),
    (["--quota=global"], "promix.quota='global' is not one of: uniform, per_class"),
    (["--tua=0.5"], "unknown config key 'tua'; did you mean tau"),
    (["--name=x"], "'name' is ambiguous: use one of model.name, run.name"),
    (["--mhcs=maybe"], "promix.mhcs='maybe': expected bool"),
    (["--noise_rate=1.5"], "data.noise_rate=1.5 is out of range"),
    (["--batch_size=0"], "optim.batch_size=0 is out of range"),
    (["--momentum=1"], "optim.momentum=1.0 is out of range: expected float in [0, 1)"),
    (["--rho=0"], "promix.rho=0.0 is out of range"),
    (["--rho_posterior=1"], "promix.rho_posterior=1.0 is out of range"),
    (["--test_fraction=0"], "data.test_fraction=0.0 is out of range"),
    (["--weight_decay=-1"], "optim.weight_decay=-1.0 is out of range"),
    (["--seed=-5"], "run.seed=-5 is out of range"),
    (["--per_class=0"], "data.per_class=0 is out of range"),
    (["--warmup_epochs=-1"], "schedule.warmup_epochs=-1 is out of range"),
    (["--forget_rate=1"], "coteaching.forget_rate=1.0 is out of range"),
    (["--keep_checkpoints=0"], "run.keep_checkpoints=0 is out of range"),
    (["--tau=none"], "promix.tau='none': expected float in [0, 1]"),
    (["stray"], "unexpected argument 'stray'"),
    (["--preset=nope"], "no preset 'nope'"),
    (["--preset"], "argument --preset: expected one argument"),
    (["--data=nowhere/"], "--data nowhere/: no such folder or CSV file"),
    (["--data=images", "--image_size=0"], "data.image_size=0 is out of range"),
    (["--data=broken", CACHE], "1 image file(s) could not be read:; "),
    (["--data=empty"], "empty"),
    (["--data=list.csv", CACHE], "missing.png"),
    (["--noise_file=x.pt"], "noise_file is set but noise=sym"),
    (["--noise=aggre"], "pass --noise_file=PATH"),
    (["--dataset=cifar10"], "dataset=cifar10 needs --root"),
    (["--resume=empty"], "is not a promix run directory (no config.json)"),
    (["--resume=corrupt", "--tau=0.5"], "'tau' cannot change"),
    (["--resume=corrupt", "--preset=demo"], "--resume continues a run with its own config"),
]
NEEDS_CUDA = [  # refused only where no CUDA device is visible
    (["--device=cuda"], "--device=cuda needs a CUDA device"),
    (["--augment=graph"], "--augment=graph needs a CUDA device"),
]
OTHER = [  # the other subcommands
    (["eval", "corrupt"], "corrupt/model.safetensors is not a readable safetensors file"),
    (["predict", "corrupt", "images/ant/0.png"], "is not a readable safetensors file"),
    (["eval", "nomodel"], "nomodel/model.safetensors is missing"),
    (["eval", "empty"], "is not a promix run directory (no config.json)"),
    (["eval", "badconfig"], "badconfig/config.json is not valid JSON"),
    (["issues", "empty"], "empty"),
    (["frobnicate"], "argument command: invalid choice: 'frobnicate'"),
    (["eval"], "the following arguments are required: run_dir"),
    (["presets", "--top=3"], "unrecognized arguments: --top=3"),
]


no_cuda = pytest.mark.skipif(CUDA, reason="a CUDA device is visible")
TABLE = ([pytest.param(TRAIN + args, msg, id=" ".join(args)) for args, msg in CASES]
         + [pytest.param(TRAIN + args, msg, id=" ".join(args), marks=no_cuda)
            for args, msg in NEEDS_CUDA]
         + [pytest.param(args, msg, id=" ".join(args)) for args, msg in OTHER])


@pytest.mark.parametrize("argv, message", TABLE)
def test_refused_in_one_line_and_nothing_written(env, capsys, argv, message):
    before = snapshot(env)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("promix: error: ") and err.count("\n") == 1, err
    assert message in err, err
    assert snapshot(env) == before  # no user file changed, no run directory, no cache


def test_the_exit_code_of_the_real_command(env):
    proc = command.promix("train", "--epochs", "0", cwd=env, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == ("promix: error: schedule.epochs=0 is out of range: expected int "
                           ">= 1\n")
    assert not (env / "runs").exists()


DIGITS = np.zeros((20, 8, 8), dtype=np.uint8), np.arange(20) % 2


@pytest.mark.parametrize("args, kwargs, error, message", [
    (DIGITS, {"tau": 2}, ConfigError, "promix.tau=2.0 is out of range"),
    (DIGITS, {"epochs": 0}, ConfigError, "schedule.epochs=0 is out of range"),
    (DIGITS, {"model.name": "vit"}, ConfigError, "not a registered model"),
    (DIGITS, {"taux": 0.5}, ConfigError, "unknown config key 'taux'"),
    ((DIGITS[0], DIGITS[1][:-1]), {}, DataError, "20 images but 19 labels"),
    ((DIGITS[0] + 2.0, DIGITS[1]), {}, DataError, "float images must lie in [0, 1]"),
    (("nowhere",), {}, DataError, "not an image folder, a CSV file or a dataset name"),
    (("images",), {"classes": ["a", "b"]}, DataError, "classes= and test= go with image arrays"),
    ((3.5,), {}, DataError, "data must be a folder, a CSV file"),
])
def test_the_python_api_refuses_before_writing(env, args, kwargs, error, message):
    before = snapshot(env)
    with pytest.raises(error) as caught:
        promix.train(*args, out_dir="out", **kwargs)
    assert message in str(caught.value)
    assert snapshot(env) == before


class Boom:
    """A callback that fails at the start of training, after the run directory exists."""

    def on_start(self, trainer):
        assert trainer.run_dir.is_dir()
        raise RuntimeError("boom")


def test_a_failed_start_leaves_no_run_directory(env):
    with pytest.raises(RuntimeError, match="boom"):
        main(TRAIN + ["--epochs=1", "--per_class=5", "--run.name=failed"], callbacks=[Boom()])
    assert not (env / "out" / "failed").exists()
