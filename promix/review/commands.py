"""What `promix review` does, called by cli.cmd_review."""

from __future__ import annotations

from pathlib import Path

from ..data.base import DataError


def review(run_dir: Path, *, top: int | None = None, limit: int = 2000, to: str | None = None,
           from_labelstudio: str | None = None, measure: str | None = None) -> str:
    """Write review.html (and an export for another tool), import a Label Studio export as
    corrections.csv, or measure the run's flags on a corrections file; return what to print."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.json").is_file():
        raise FileNotFoundError(f"{run_dir} is not a promix run directory (no config.json)")
    if limit < 1 or (top is not None and top < 1):
        raise DataError("--top and --limit must be at least 1")
    if measure is not None:
        return measured(run_dir, Path(measure))
    if from_labelstudio is not None:
        from .exports import import_labelstudio

        path, counts = import_labelstudio(from_labelstudio, run_dir)
        done = ", ".join(f"{k} {v}" for k, v in counts.items() if v)
        return (f"{path}: {done or 'no decision'}\nnext: promix train <the run's options> "
                f"--corrections={path}")
    from .page import render_page, review_items

    data = review_items(run_dir, top=top, limit=limit)
    page = run_dir / "review.html"
    page.write_text(render_page(data), encoding="utf-8")
    lines = [f"{len(data['items']):,} images to review ({data['flagged']:,} flagged of "
             f"{data['samples']:,}): {page}"]
    if data["note"]:
        lines.append(f"no thumbnails: {data['note']}")
    if to == "labelstudio":
        from .exports import export_labelstudio

        lines.append(f"Label Studio: {export_labelstudio(run_dir, data)}")
    elif to == "fiftyone":
        from .exports import export_fiftyone

        lines.append(f"FiftyOne: {export_fiftyone(run_dir, data)}")
    lines.append("keys: a accept, k keep, 1-9/0 class, x invalid, u unsure, arrows move, "
                 "e export corrections.csv")
    return "\n".join(lines)


def measured(run_dir: Path, path: Path) -> str:
    """The run's flags and ranking against the labels a person verified in `path`."""
    from .. import runs
    from ..data.load import build_dataset
    from ..report.table import analyze_run
    from .corrections import match_rows, measured_detection, read_corrections

    rows = read_corrections(path)
    cfg = runs.load_config(run_dir)
    data = build_dataset(cfg.data, announce=False)  # the run's training set, to find the files
    where = match_rows(rows, data, root=cfg.data.root, source=str(path))
    run = analyze_run(run_dir)
    m = measured_detection(rows, where, run.labels, run.issues)
    if not m["verified"]:
        return f"{path}: no verdict (accept, keep, relabel) to measure with"
    return (f"measured on the {m['verified']:,} labels verified in {path} ({m['wrong']:,} "
            f"were wrong): flags precision {m['precision']:.1%} ({m['flagged']:,} flagged), "
            f"recall {m['recall']:.1%}; ranking AUROC {m['auroc']:.3f}")
