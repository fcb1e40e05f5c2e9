"""The report's figures as PNG files, drawn with matplotlib's Agg canvas (no GUI, no pyplot
global state). Each function takes plain data and a path, writes one PNG and returns the path,
or None when the run has nothing to draw (no test set, no true labels, a warm-up-only run)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .table import RunIssues

DPI = 100


def write_plots(run_dir: Path, run: RunIssues, metrics: list[dict]) -> dict[str, Path]:
    """All figures into run_dir/plots/; {title: path} of those that were drawn."""
    out = Path(run_dir) / "plots"
    out.mkdir(exist_ok=True)
    figures = {
        ("Test accuracy" if run.true_labels is not None else
         "Held-out accuracy (against the given labels, which may be wrong too)"):
            accuracy_curves(metrics, out / "accuracy.png"),
        "Clean selection over epochs": selection_curves(metrics, out / "selection.png"),
        "Samples per class": class_counts(run, out / "class_counts.png"),
        "Given versus predicted labels": confusion(run, out / "confusion.png"),
        "Noise transition matrix (estimated)": transitions(run, out / "transition.png"),
        "Label quality": quality_histogram(run, out / "label_quality.png"),
    }
    return {title: path for title, path in figures.items() if path is not None}


def accuracy_curves(metrics: list[dict], path: Path) -> Path | None:
    """test/acc (the peers' ensemble) and each head's accuracy against the epoch."""
    keys = sorted({k for m in metrics for k in m if k.startswith("test/acc")})
    if not keys:
        return None
    fig, ax = _figure(6.4, 3.6)
    for key in keys:
        epochs, values = _series(metrics, key)
        main = key == "test/acc"
        ax.plot(epochs, 100 * values, label=_ACC_NAMES.get(key, key), lw=2.2 if main else 1,
                alpha=1 if main else 0.7)
    ax.set(xlabel="epoch", ylabel="test accuracy (%)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize=8)
    return _save(fig, path)


_ACC_NAMES = {"test/acc": "ensemble (Acc Mean)", "test/acc_net1": "peer 1",
              "test/acc_net2": "peer 2", "test/acc_pseudo1": "peer 1, pseudo head",
              "test/acc_pseudo2": "peer 2, pseudo head"}


def selection_curves(metrics: list[dict], path: Path) -> Path | None:
    """Size of CSS and of CSS ∪ MHCS per peer; their precision and recall when known."""
    sizes = sorted({k for m in metrics for k in m if k.startswith("selected/")})
    if not sizes:
        return None
    quality = any(k.startswith("select/") for m in metrics for k in m)
    panels = ["size"] + (["precision", "recall"] if quality else [])
    fig, axes = _figure(4.2 * len(panels), 3.4, ncols=len(panels))
    for ax, panel in zip(np.atleast_1d(axes), panels, strict=True):
        for key in sizes:
            name = key.split("/", 1)[1]  # css_1, mhcs_2, ...
            series_key = key if panel == "size" else f"select/{name}/{panel}"
            epochs, values = _series(metrics, series_key)
            label = name.replace("mhcs", "CSS∪MHCS").replace("css", "CSS").replace("_", ", peer ")
            ax.plot(epochs, values, marker=".", label=label,
                    ls="-" if name.startswith("css") else "--")
        ax.set(xlabel="epoch", ylabel=panel if panel != "size" else "selected samples")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize=7)
    return _save(fig, path)


def class_counts(run: RunIssues, path: Path) -> Path:
    """Per given class: samples, selected at the end, flagged, estimated wrong (the confident
    joint's off-diagonal), truly wrong (only when the true labels are known)."""
    c = len(run.classes)
    joint = run.issues.joint
    bars = {"samples": np.bincount(run.labels, minlength=c),
            "selected": np.bincount(run.labels, weights=run.selected_by != "none", minlength=c),
            "flagged as issues": np.bincount(run.labels, weights=run.issues.is_label_issue,
                                             minlength=c),
            "estimated wrong": joint.sum(1) - joint.diagonal()}
    if run.is_wrong is not None:
        bars["truly wrong"] = np.bincount(run.labels, weights=run.is_wrong, minlength=c)
    fig, ax = _figure(max(6.4, 0.5 * c), 3.6)
    width = 0.8 / len(bars)
    x = np.arange(c)
    for k, (name, counts) in enumerate(bars.items()):
        ax.bar(x + (k - (len(bars) - 1) / 2) * width, counts, width, label=name)
    _class_ticks(ax.set_xticks, x, run.classes)
    ax.set(ylabel="samples (by given label)")
    ax.legend(fontsize=8)
    return _save(fig, path)


def confusion(run: RunIssues, path: Path) -> Path:
    """Counts of (given label, ensemble prediction); off-diagonal cells are suspected flips."""
    c = len(run.classes)
    counts = np.zeros((c, c), dtype=int)
    np.add.at(counts, (run.labels, run.issues.predicted_label), 1)
    fig, ax = _figure(max(4.8, 0.45 * c + 2), max(4.2, 0.45 * c + 1.6))
    _matrix(fig, ax, counts, run.classes, fmt="d")
    ax.set(xlabel="predicted label (ensemble)", ylabel="given label")
    return _save(fig, path)


def transitions(run: RunIssues, path: Path) -> Path:
    """The estimated T̂[i, j] = P̂(given j | true i) from the confident joint; next to the true
    T only when the true labels are known."""
    from ..confident import noise_estimates
    from ..issues import transition_matrix

    c = len(run.classes)
    mats = {"estimated": noise_estimates(run.labels, run.issues.joint)["transition_matrix"]}
    if run.true_labels is not None:
        mats["true"] = transition_matrix(run.true_labels, run.labels, c)
    side = max(4.2, 0.4 * c + 2)
    fig, axes = _figure(len(mats) * side, side - 0.4, ncols=len(mats))
    for ax, (name, mat) in zip(np.atleast_1d(axes), mats.items(), strict=True):
        _matrix(fig, ax, mat, run.classes, fmt=".2f", vmax=1)
        ax.set(title=name, xlabel="given label",
               ylabel="true label" if name == "true" else "true label (estimated)")
    return _save(fig, path)


def quality_histogram(run: RunIssues, path: Path) -> Path:
    """Distribution of label_quality, split by truly right and wrong labels when known."""
    fig, ax = _figure(6.4, 3.4)
    bins = np.linspace(0, 1, 41)
    q = run.issues.label_quality
    if run.is_wrong is None:
        ax.hist(q, bins=bins, color="tab:blue")
    else:
        ax.hist([q[~run.is_wrong], q[run.is_wrong]], bins=bins, stacked=True,
                label=["given label right", "given label wrong"],
                color=["tab:green", "tab:red"])
        ax.legend(fontsize=8)
    ax.set(xlabel="label_quality", ylabel="samples")
    return _save(fig, path)


def _matrix(fig, ax, values: np.ndarray, classes, *, fmt: str, vmax=None) -> None:
    im = ax.imshow(values, cmap="Blues", vmin=0, vmax=vmax)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    ticks = np.arange(len(classes))
    _class_ticks(ax.set_xticks, ticks, classes)
    _class_ticks(ax.set_yticks, ticks, classes, rotation=0)
    if len(classes) <= 15:  # numbers stay legible
        top = values.max() or 1
        for (i, j), v in np.ndenumerate(values):
            ax.text(j, i, format(v, fmt), ha="center", va="center", fontsize=7,
                    color="white" if v > 0.6 * top else "black")


def _class_ticks(set_ticks, ticks, classes, rotation=45) -> None:
    if len(classes) <= 30:
        set_ticks(ticks, [str(c) for c in classes], rotation=rotation, fontsize=8)


def _series(metrics: list[dict], key: str) -> tuple[np.ndarray, np.ndarray]:
    rows = [(m["epoch"], m[key]) for m in metrics if key in m]
    epochs, values = zip(*rows, strict=True) if rows else ((), ())
    return np.asarray(epochs), np.asarray(values, dtype=float)


def _figure(width: float, height: float, ncols: int = 1):
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, ncols)
    return fig, axes


def _save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, format="png")
    return path
