"""The Python API: promix.train's data forms, Run's answers, checked against independent
computations from the run directory's files."""

import sys

import numpy as np
import pytest
import torch
from PIL import Image

import promix
from promix.api import make_config
from promix.models import create_model
from promix.results import load_nets
from promix.runs import load_tensors

pytestmark = pytest.mark.usefixtures("one_thread")


def digits():
    from sklearn.datasets import load_digits

    d = load_digits()
    return (d.images * 255 / 16).astype(np.uint8), d.target.astype(np.int64)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    images, labels = digits()
    labels = labels.copy()
    labels[:30] = (labels[:30] + 1) % 10  # some wrong labels
    out = tmp_path_factory.mktemp("runs")
    return promix.train(images, labels, epochs=3, warmup_epochs=1, per_class=30, width=8,
                        baseline="ce", progress=False, out_dir=str(out), **{"run.name": "api"})


def test_the_run_directory_and_metrics(run):
    assert run.run_dir.name == "api" and (run.run_dir / "model.safetensors").is_file()
    assert run.config.data.dataset == "arrays" and run.config.schedule.epochs == 3
    assert run.metrics["epochs"] == 3
    assert run.metrics["test_accuracy"] == run.history[-1]["test/acc"]
    assert [r["epoch"] for r in run.history] == [0, 1, 2]
    assert run.baseline is not None and run.baseline.metrics["method"] == "ce"
    assert run.classes == tuple(str(i) for i in range(10))


def independent_proba(run_dir, images):
    """The peers' mean softmax computed from the files, without promix's inference code."""
    import json

    info = json.loads((run_dir / "data.json").read_text())
    tensors = load_tensors(run_dir / "model.safetensors")
    x = torch.from_numpy(images).float()[:, None] / 255
    x = (x - torch.tensor(info["mean"]).view(1, -1, 1, 1)) / torch.tensor(info["std"]).view(
        1, -1, 1, 1)
    probs = []
    for k in (1, 2):
        net = create_model("small_cnn", num_classes=10, in_channels=1, width=8)
        net.load_state_dict({n[len(f"peer{k}."):]: t for n, t in tensors.items()
                             if n.startswith(f"peer{k}.")})
        with torch.no_grad():
            probs.append(torch.softmax(net.eval()(x).logits, 1))
    return ((probs[0] + probs[1]) / 2).numpy()


def test_predict_proba_matches_an_independent_computation(run):
    images, _ = digits()
    got = run.predict_proba(images[:16])
    assert got.shape == (16, 10)
    np.testing.assert_allclose(got.sum(1), 1, atol=1e-5)
    np.testing.assert_allclose(got, independent_proba(run.run_dir, images[:16]), atol=1e-5)
    assert (run.predict(images[:16]) == got.argmax(1)).all()


def test_image_files_are_decoded_like_training(run, tmp_path):
    images, _ = digits()
    paths = []
    for i in range(4):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(images[i], "L").save(paths[-1])
    np.testing.assert_allclose(run.predict_proba(paths), run.predict_proba(images[:4]),
                               atol=1e-6)
    big = tmp_path / "big.png"  # another size and mode: resized to 8x8 gray
    Image.fromarray(np.repeat(np.kron(images[0], np.ones((4, 4), np.uint8))[..., None], 3, 2),
                    "RGB").save(big)
    assert run.predict_proba(str(big)).shape == (1, 10)


def test_arrays_in_other_layouts_and_sizes(run):
    images, _ = digits()
    want = run.predict_proba(images[:4])
    np.testing.assert_allclose(run.predict_proba(images[:4, :, :, None]), want, atol=1e-6)
    np.testing.assert_allclose(run.predict_proba(images[:4] / 255.0), want, atol=1e-6)
    np.testing.assert_allclose(run.predict_proba(torch.from_numpy(images[:4])[:, None]), want,
                               atol=1e-6)
    assert run.predict_proba(np.zeros((2, 16, 16), np.uint8)).shape == (2, 10)  # resized
    with pytest.raises(promix.data.base.DataError, match="3 channel"):
        run.predict_proba(np.zeros((2, 8, 8, 3), np.uint8))


def test_label_issues_table(run):
    issues = run.label_issues()
    out = load_tensors(run.run_dir / "train_outputs.safetensors")
    labels = out["noisy_labels"]
    probs = (torch.softmax(out["logits1"].double(), 1) + torch.softmax(
        out["logits2"].double(), 1)) / 2
    given = probs[torch.arange(len(labels)), labels].numpy()
    assert len(issues) == len(labels) == 300
    assert list(issues["label_quality"]) == sorted(issues["label_quality"])  # suspicious first
    np.testing.assert_allclose(issues["label_quality"], given[issues["index"]], atol=1e-6)


def test_label_issues_without_pandas_is_a_structured_array(run, monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)  # `import pandas` now fails
    issues = run.label_issues()
    assert isinstance(issues, np.ndarray) and issues.dtype.names[0] == "index"
    assert issues["label_quality"].dtype == np.float64 and len(issues) == 300
    assert len(issues[issues["is_label_issue"]]) == int(issues["is_label_issue"].sum())


def test_eval_of_an_arrays_run_says_why_it_cannot(run, capsys):
    from promix.cli import main

    assert main(["eval", str(run.run_dir)]) == 2
    assert "trained on in-memory arrays" in capsys.readouterr().err


def test_load_reopens_the_same_model(run):
    images, _ = digits()
    again = promix.Run.load(run.run_dir)
    np.testing.assert_array_equal(again.predict_proba(images[:8]), run.predict_proba(images[:8]))
    assert again.baseline is not None and again.baseline.run_dir.name == "baseline-ce"
    nets = load_nets(run.run_dir)  # the architecture comes from the run directory
    assert len(nets) == 2 and nets[0].linear.out_features == 10 and not nets[0].training
    assert isinstance(run.model, torch.nn.Module) and len(run.model.peers) == 2


@pytest.mark.parametrize("make, dataset, preset", [
    (lambda p: (None, None), "digits", "demo"),
    (lambda p: ("digits", None), "digits", "demo"),
    (lambda p: ("mnist5k", None), "mnist5k", "demo"),
    (lambda p: (p, None), "folder", "user"),
    (lambda p: (p / "list.csv", None), "csv", "user"),
    (lambda p: (np.zeros((4, 8, 8), np.uint8), [0, 1, 0, 1]), "arrays", "user"),
])
def test_what_data_means(tmp_path, make, dataset, preset):
    (tmp_path / "list.csv").write_text("path,label\n")
    data, labels = make(tmp_path)
    cfg = make_config(data, labels)
    assert (cfg.data.dataset, cfg.preset) == (dataset, preset)
    if dataset in ("folder", "csv"):
        assert cfg.data.root == str(data)


def test_overrides_are_config_fields():
    cfg = make_config("digits", preset="cifar10-sym50", overrides={"epochs": 7, "promix.tau": 0.5})
    assert (cfg.schedule.epochs, cfg.promix.tau, cfg.model.name) == (7, 0.5, "resnet18")
    assert cfg.data.dataset == "digits"
