"""The run report: label-issue tables, figures and report.html, from a run directory.

    write_report(run_dir, data)   after training (api.train calls it), or
    promix issues RUN_DIR         on demand; the training images are rebuilt from the config.

Writes into the run directory:
    label_issues.csv     one row per training sample, most suspicious first
    class_summary.csv    per class: size, selected, flagged, estimated noise rate
    issues_summary.json  health score, counts, transition matrices, AUROC/AUPRC when known
    plots/*.png          the figures
    report.html          everything above on one self-contained page
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Report:
    html: Path
    summary: dict  # issues_summary.json
    rows: list[dict]  # label_issues.csv, most suspicious first
    gallery_note: str | None = None  # why the gallery is missing, when it is


def write_report(run_dir: Path, data=None, *, top: int = 48) -> Report:
    """Write the tables, figures and report.html of a finished run.

    data: the run's `Dataset`, for the gallery thumbnails; None rebuilds it from the run's
    config (the gallery is left out, with a note, when that fails). top: gallery size.
    """
    from .. import runs
    from .html import write_html
    from .plots import write_plots
    from .table import analyze_run, class_rows, issue_rows, write_tables

    run_dir = Path(run_dir)
    run = analyze_run(run_dir)
    summary = write_tables(run_dir, run)
    rows = issue_rows(run)
    metrics_path = run_dir / "metrics.jsonl"
    metrics = runs.read_metrics(run_dir) if metrics_path.is_file() else []
    plots = write_plots(run_dir, run, metrics)
    images, note = _training_images(run_dir, run, data)
    path = write_html(run_dir / "report.html", run, summary, class_rows(run), rows, plots,
                      images, top=top, title=f"promix label issues: {run_dir.name}",
                      sections=_review_sections(run_dir))
    return Report(path, summary, rows, note)


def format_report(report: Report, *, top: int = 20) -> str:
    """What `promix issues` prints: the summary, the `top` most suspicious rows, the paths."""
    s = report.summary
    lines = [f"{s['label_issues']:,} label issues in {s['samples']:,} samples, "
             f"health score {s['health_score']:.1%}"]
    if "detection" in s:
        d = s["detection"]
        lines.append(f"against the true labels: AUROC {d['auroc']:.3f}, AUPRC {d['auprc']:.3f}, "
                     f"flag precision {d['precision']:.1%}, recall {d['recall']:.1%}")
    cols = [k for k in ("index", "given_label", "predicted_label", "label_quality",
                        "suggested_label", "selected_by", "path") if k in report.rows[0]]
    lines.append("\t".join(cols))
    lines += ["\t".join(str(row[k]) for k in cols) for row in report.rows[:top]]
    if report.gallery_note:
        lines.append(f"no gallery in the report: {report.gallery_note}")
    lines.append(f"table: {report.html.parent / 'label_issues.csv'}")
    lines.append(f"report: {report.html}")
    return "\n".join(lines)


def _review_sections(run_dir: Path) -> list[str]:
    """The annotators' section when the run took several labels per image (noise.json)."""
    import json

    path = run_dir / "noise.json"
    info = json.loads(path.read_text()).get("annotators") if path.is_file() else None
    if not info:
        return []
    from ..review.report import annotator_section

    return [annotator_section(info)]


def _training_images(run_dir: Path, run, data):
    """(images (N, C, H, W) uint8 or None, why None)."""
    if data is None:
        from .. import runs
        from ..data.base import DataError
        from ..data.load import build_dataset

        try:
            data = build_dataset(runs.load_config(run_dir).data)
        except (DataError, OSError) as err:
            return None, f"could not rebuild the training images ({err})"
    labels = data.train.labels.cpu().numpy()
    if len(labels) != len(run.labels) or (labels != run.labels).any():
        return None, ("the rebuilt training set does not match the run's labels (the data "
                      "changed since training)")
    return data.train.images, None
