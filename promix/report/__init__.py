"""The run report: label-issue tables, figures and report.html, from a run directory.

    write_report(run_dir, data)   after training (api.train calls it), or
    promix issues RUN_DIR         on demand; the training images are rebuilt from the config.

Writes into the run directory:
    label_issues.csv     one row per training sample, most suspicious first
    class_summary.csv    per class: size, selected, flagged, estimated noise rate (95% interval)
    issues_summary.json  counts, `estimated` noise, and `truth` measurements only when real truth
                         exists (synthetic or CIFAR-N noise, or --truth verified labels)
    plots/*.png          the figures
    report.html          everything above on one self-contained page
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Report:
    html: Path  # the page written (report.html, or the side page when that one was kept)
    summary: dict  # issues_summary.json
    rows: list[dict]  # label_issues.csv, most suspicious first
    gallery_note: str | None = None  # why the gallery is missing, when it is
    kept: Path | None = None  # an existing report.html kept because it had the gallery


GALLERY_MARK = '<div class="gallery">'
SIDE_PAGE = "report-without-gallery.html"


def write_report(run_dir: Path, data=None, *, top: int = 48, truth: str | None = None) -> Report:
    """Write the tables, figures and report.html of a finished run.

    data: the run's `Dataset`, for the gallery thumbnails; None rebuilds it from the run's
    config (the gallery is left out, with a note, when that fails). A report.html that has a
    gallery is never replaced by one without: the new page then goes to
    report-without-gallery.html. top: gallery size. truth: a verified-labels CSV
    (default: the run's data.truth).
    """
    from .. import runs
    from .html import write_html
    from .plots import write_plots
    from .table import analyze_run, class_rows, issue_rows, write_tables

    run_dir = Path(run_dir)
    run = analyze_run(run_dir, truth=truth)
    images, note = _training_images(run_dir, run, data)
    summary = write_tables(run_dir, run)
    rows = issue_rows(run)
    metrics_path = run_dir / "metrics.jsonl"
    metrics = runs.read_metrics(run_dir) if metrics_path.is_file() else []
    plots = write_plots(run_dir, run, metrics)
    page, kept = run_dir / "report.html", None
    if images is None and page.is_file() and GALLERY_MARK in page.read_text(encoding="utf-8"):
        page, kept = run_dir / SIDE_PAGE, page
    path = write_html(page, run, summary, class_rows(run), rows, plots,
                      images, top=top, title=f"promix label issues: {run_dir.name}",
                      sections=_review_sections(run_dir))
    return Report(path, summary, rows, note, kept)


def format_report(report: Report, *, top: int = 20) -> str:
    """What `promix issues` prints: estimates (marked so), measurements against real truth
    only, the `top` most suspicious rows, and the files written."""
    lines = [summary_lines(report.summary)]
    cols = [k for k in ("index", "path", "given_label", "predicted_label", "label_quality",
                        "is_label_issue", "suggested_label", "selected_by", "verified_label")
            if k in report.rows[0]]
    lines.append("\t".join(cols))
    lines += ["\t".join(str(row[k]) for k in cols) for row in report.rows[:top]]
    if report.gallery_note:
        lines.append(f"no gallery: {report.gallery_note}")
    if report.kept:
        lines.append(f"kept {report.kept} (it has the gallery); the new page without it: "
                     f"{report.html}")
    lines.append(f"table: {report.html.parent / 'label_issues.csv'}")
    lines.append(f"report: {report.html}")
    return "\n".join(lines)


def summary_lines(s: dict) -> str:
    """The flagged count and the estimates (marked as such); measurements only against truth."""
    est = s["estimated"]
    low, high = est["noise_rate_interval_95"]
    lines = [f"{s['label_issues']:,} label issues flagged in {s['samples']:,} samples",
             f"estimated from the model{'' if 'truth' in s else ' (no ground truth)'}: "
             f"{est['wrong_labels']:,} wrong "
             f"labels, noise rate {est['noise_rate']:.1%} (95% interval {low:.1%}-{high:.1%}), "
             f"clean share (health score) {s['health_score']:.1%}"]
    if "caveat" in est:
        lines.append(f"note: {est['caveat']}")
    if "truth" in s:
        t, d = s["truth"], s["truth"]["detection"]
        auroc = "" if d["auroc"] != d["auroc"] else f", AUROC {d['auroc']:.3f}"  # NaN: one class
        precision = f"{d['precision']:.1%}" if d["flagged"] else "n/a (none flagged)"
        recall = f"{d['recall']:.1%}" if d["wrong"] else "n/a (none wrong)"
        lines.append(f"measured on {t['size']:,} labels, {t['source']}: {t['wrong']:,} wrong, "
                     f"{d['flagged']:,} flagged; flag precision {precision}, recall {recall}, "
                     f"F1 {d['f1']:.3f}{auroc}")
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

        changed = changed_files(run_dir)
        if changed:
            return None, changed
        try:
            data = build_dataset(runs.load_config(run_dir).data, announce=False)
        except (DataError, OSError) as err:
            return None, f"could not rebuild the training images ({err})"
    labels = data.train.labels.cpu().numpy()
    if len(labels) != len(run.labels) or (labels != run.labels).any():
        return None, ("the rebuilt training set does not match the run's labels (the data "
                      "changed since training)")
    return data.train.images, None


def changed_files(run_dir: Path) -> str | None:
    """Why the training files are not those the run saw (missing, resized, touched), or None."""
    import json

    from .. import runs

    info = json.loads((run_dir / "data.json").read_text())
    if not info.get("files_sha256"):
        return None
    rows = runs.read_labels(run_dir)
    if "size" not in rows[0]:
        return None
    changed = [r["path"] for r in rows
               if runs.file_identity(r["path"])[1:] != (int(r["size"]), int(r["mtime_ns"]))]
    if not changed:
        return None
    return (f"{len(changed)} of the {len(rows)} training files are missing or changed since "
            f"training (first: {changed[0]}); run where the data is, or restore it")
