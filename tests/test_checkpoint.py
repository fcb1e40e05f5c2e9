"""Checkpoints: atomic files, checksums with fallback, keep-K, exact resume (docs/resume.md)."""

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from promix import checkpoint
from promix.config import ConfigError, apply_overrides, load_preset, to_dict
from promix.data.load import build_dataset
from promix.runs import load_tensors, read_metrics, write_json
from promix.trainer import Trainer

TINY = ["--per_class=20", "--width=4", "--batch_size=32", "--epochs=4", "--warmup_epochs=2",
        "--progress=false", "--baseline=none", "--tau=0.9"]
# The trainer's random draws per step are not stored, so these keys are timings only.
TIMING = ("train_seconds",)


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_cfg(*extra):
    return apply_overrides(load_preset("demo"), TINY + list(extra))


@pytest.fixture(scope="module")
def data():
    return build_dataset(tiny_cfg().data)


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    """4 uninterrupted epochs (2 warm-up, 2 ProMix) with a checkpoint after each."""
    run_dir = tmp_path_factory.mktemp("run")
    trainer = Trainer(tiny_cfg("--keep_checkpoints=10"), data, run_dir)
    trainer.fit(on_epoch=lambda t, record: checkpoint.save(run_dir, t, record["epoch"]))
    return trainer, run_dir


def untimed(history):
    return [{k: v for k, v in r.items() if k not in TIMING} for r in history]


def test_resume_from_each_epoch_matches_the_uninterrupted_run(trained, data):
    """Bitwise: weights, BN buffers, momentum, priors, masks, history and every RNG stream."""
    full, run_dir = trained
    want_tensors, _ = checkpoint.capture(full, 3)
    for epoch in (1, 2):  # from the last warm-up epoch, and from inside the ProMix phase
        again = Trainer(tiny_cfg("--keep_checkpoints=10"), data, run_dir)
        tensors, state = checkpoint.load(checkpoint.folder(run_dir) / f"ckpt-epoch{epoch:04d}.json")
        start = checkpoint.restore(again, tensors, state)
        assert start == epoch + 1
        again.fit(start_epoch=start)
        got, _ = checkpoint.capture(again, 3)
        assert got.keys() == want_tensors.keys()
        for name, t in want_tensors.items():
            assert torch.equal(got[name], t), (epoch, name)
        assert untimed(again.history) == untimed(full.history)
        mine, want = again.state.random, full.state.random
        assert torch.equal(mine.generator.get_state(), want.generator.get_state())
        assert mine.rng.bit_generator.state == want.rng.bit_generator.state


def test_round_trip_restores_every_stream(trained, data):
    full, run_dir = trained
    tensors, state = checkpoint.load(checkpoint.folder(run_dir) / "ckpt-epoch0003.json")
    again = Trainer(tiny_cfg(), data)
    checkpoint.restore(again, tensors, state)
    draws = []
    for t in (full, again):
        checkpoint.restore_rng(t, tensors, state)  # the same point in every stream
        s = t.state
        draws.append((torch.rand(3).tolist(), s.random.rng.random(),
                      torch.randperm(5, generator=s.order).tolist(),
                      torch.rand(2, generator=s.random.generator,
                                 device=s.random.generator.device).tolist()))
    assert draws[0] == draws[1]
    assert again.state.priors.clean.shape == (2, 10)
    assert torch.equal(again.state.priors.clean, full.state.priors.clean)
    assert again.history == full.history


def test_keeps_the_newest_k(trained, tmp_path):
    trainer, _ = trained
    trainer.cfg.run.keep_checkpoints = 2
    try:
        for epoch in range(4):
            checkpoint.save(tmp_path, trainer, epoch)
    finally:
        trainer.cfg.run.keep_checkpoints = 10
    names = sorted(p.name for p in checkpoint.folder(tmp_path).iterdir())
    assert names == ["ckpt-epoch0002.json", "ckpt-epoch0002.safetensors",
                     "ckpt-epoch0003.json", "ckpt-epoch0003.safetensors"]


def test_a_failed_write_leaves_the_old_file_whole(tmp_path, monkeypatch):
    target = tmp_path / "ckpt-epoch0001.json"
    target.write_bytes(b"old")

    def crash(src, dst):
        raise OSError("killed")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        checkpoint._write_atomic(target, b"new, half written")
    assert target.read_bytes() == b"old"


def corrupt_truncate(folder, epoch):
    path = folder / f"ckpt-epoch{epoch:04d}.safetensors"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def corrupt_flip(folder, epoch):
    path = folder / f"ckpt-epoch{epoch:04d}.safetensors"
    data = bytearray(path.read_bytes())
    data[len(data) - 100] ^= 0x01  # one bit of one weight: still a valid safetensors file
    path.write_bytes(bytes(data))


def corrupt_json(folder, epoch):
    path = folder / f"ckpt-epoch{epoch:04d}.json"
    path.write_text(path.read_text()[:200])


def corrupt_state(folder, epoch):  # valid JSON, but the epoch was edited
    path = folder / f"ckpt-epoch{epoch:04d}.json"
    sidecar = json.loads(path.read_text())
    sidecar["state"]["epoch"] += 1
    path.write_text(json.dumps(sidecar))


def drop_json(folder, epoch):  # killed between the two renames
    (folder / f"ckpt-epoch{epoch:04d}.json").unlink()


@pytest.mark.parametrize("damage", [corrupt_truncate, corrupt_flip, corrupt_json, corrupt_state,
                                    drop_json])
def test_a_bad_newest_checkpoint_falls_back_to_the_previous_one(trained, tmp_path, damage):
    trainer, _ = trained
    for epoch in (1, 2):
        checkpoint.save(tmp_path, trainer, epoch)
    damage(checkpoint.folder(tmp_path), 2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        path, tensors, state = checkpoint.latest(tmp_path)
    assert path.name == "ckpt-epoch0001.json" and state["epoch"] == 1
    if damage is not drop_json:  # an incomplete pair is not a checkpoint: nothing to name
        assert any("ckpt-epoch0002.json" in str(w.message) for w in caught)
    damage(checkpoint.folder(tmp_path), 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert checkpoint.latest(tmp_path) is None


def test_resume_refuses_other_noisy_labels(trained, data):
    _, run_dir = trained
    tensors, state = checkpoint.load(checkpoint.folder(run_dir) / "ckpt-epoch0001.json")
    tensors["noisy_labels"] = tensors["noisy_labels"].roll(1)
    with pytest.raises(checkpoint.CheckpointError, match="noisy labels differ"):
        checkpoint.restore(Trainer(tiny_cfg(), data), tensors, state)


@pytest.mark.parametrize("override, ok", [
    ("--progress=true", True), ("--keep_checkpoints=5", True), ("--eval_batch_size=64", True),
    ("--epochs=10", False), ("--tau=0.5", False), ("--seed=1", False), ("--noise_rate=0.2", False),
])
def test_resume_allows_only_harmless_overrides(tmp_path, override, ok):
    write_json(tmp_path / "config.json", to_dict(tiny_cfg()))
    if ok:
        cfg = checkpoint.resume_config(tmp_path, [override])
        assert cfg.run.resume == str(tmp_path)
    else:
        with pytest.raises(ConfigError, match="cannot change"):
            checkpoint.resume_config(tmp_path, [override])


# ---------------------------------------------------------------------- through the real CLI


HOOKS = Path(__file__).with_name("hooks.py")  # promix's CLI with test callbacks installed


def promix_cli(*args, cwd, env=None, wait=True, hooks=()):
    cmd = [sys.executable, str(HOOKS), *hooks, "train", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    if not wait:
        return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_equals_an_uninterrupted_run(tmp_path):
    """Bitwise on CPU in deterministic mode: the resumed run redoes the killed epoch from the
    last good checkpoint with every stream restored, so the same ops run on the same inputs."""
    args = [*TINY, "--deterministic=true", f"--out_dir={tmp_path}"]
    full = promix_cli(*args, "--run.name=full", cwd=tmp_path)
    assert full.returncode == 0, full.stderr

    # 200 samples, B = 32: warm-up epochs take 7 steps (last batch kept), ProMix epochs 6.
    # Pause after step 7 + 7 + 6 + 2 = 22, the 2nd of 6 steps of epoch 3, and SIGKILL there.
    marker = tmp_path / "paused"
    proc = promix_cli(*args, "--run.name=killed", cwd=tmp_path, wait=False,
                      hooks=["--pause-after=22", f"--marker={marker}"])
    try:
        for _ in range(1200):
            if marker.exists() or proc.poll() is not None:
                break
            subprocess.run(["sleep", "0.1"])
        assert marker.exists(), proc.communicate()[1]
    finally:
        proc.kill()  # SIGKILL
        proc.communicate()
    assert proc.returncode == -9
    run_dir = tmp_path / "killed"
    assert not (run_dir / "model.safetensors").exists()
    assert [m["epoch"] for m in read_metrics(run_dir)] == [0, 1, 2]
    # Damage the newest checkpoint too: resume must warn and go back one more epoch.
    corrupt_truncate(checkpoint.folder(run_dir), 2)

    resumed = promix_cli("--resume", str(run_dir), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "ckpt-epoch0002.json" in resumed.stderr and "checksum" in resumed.stderr

    want, got = (load_tensors(d / "model.safetensors") for d in (tmp_path / "full", run_dir))
    assert want.keys() == got.keys()
    for name in want:
        assert torch.equal(want[name], got[name]), name
    want_m, got_m = (read_metrics(d) for d in (tmp_path / "full", run_dir))
    assert [m["epoch"] for m in got_m] == [0, 1, 2, 3]  # no duplicate epochs
    assert untimed(got_m) == untimed(want_m)
    want_s, got_s = (json.loads((d / "summary.json").read_text())
                     for d in (tmp_path / "full", run_dir))
    assert got_s["test_accuracy"] == want_s["test_accuracy"]
    assert got_s["selection"] == want_s["selection"]


def test_resume_of_a_folder_that_is_no_run_is_a_clear_error(tmp_path):
    proc = promix_cli("--resume", str(tmp_path), cwd=tmp_path)
    assert proc.returncode == 2
    assert "no config.json" in proc.stderr
