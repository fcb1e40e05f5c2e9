"""`promix export RUN_DIR --to=DIR | --csv=FILE`: the user's data with the accepted fixes.

Every image of the run's data gets a status:
    reviewed     a person decided in `promix review` (RUN_DIR/corrections.csv, or
                 --corrections): accept, keep or relabel set its label; invalid images are
                 left out (status invalid); unsure ones fall through to the rules below;
    relabelled   flagged as a label issue, and the peers' ensemble gives its predicted class at
                 least --min_confidence: the new label is that class;
    review       flagged, but less sure: keeps its given label (or is left out with
                 --unsure=drop) and is listed in review.csv for a person to check;
    kept         not flagged: the given label;
    not_checked  in the data but not in the training set (the held-out test part, skipped
                 files): the given label.
--to writes DIR/<label>/<file> (DIR/train|test/<label>/<file> for a train/test layout) plus
DIR/export.csv (every file) and DIR/review.csv; --csv writes a manifest `promix train --data`
reads (path,label[,split], absolute paths, extra columns) and FILE-review.csv. The user's
files are only read: copied (default), hard-linked or symlinked, never written; the export
refuses to run when they changed since training or when the output lies in the data.
"""

from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path

from .data.base import DataError
from .data.folder import list_csv, list_folder
from .review.corrections import read_corrections

FIELDS = ["path", "label", "given_label", "status", "predicted_label", "confidence",
          "label_quality", "source"]


def export_run(run_dir: Path, *, to: str | None = None, csv_path: str | None = None,
               link: str = "copy", min_confidence: float = 0.9, unsure: str = "keep",
               corrections: str | None = None) -> str:
    """Export the run's data (module docstring); returns the one-paragraph summary."""
    from . import runs
    from .report import changed_files
    from .report.table import analyze_run

    if not 0 <= min_confidence <= 1:
        raise DataError(f"--min_confidence={min_confidence}: a probability, in [0, 1]")
    cfg = runs.load_config(run_dir)
    if cfg.data.dataset not in ("folder", "csv"):
        raise DataError(f"{run_dir}: export needs a run on an image folder or CSV manifest "
                        f"(this one trained on {cfg.data.dataset})")
    root = Path(cfg.data.root)
    changed = changed_files(run_dir)
    if changed:
        raise DataError(f"not exported: {changed}")
    listing = list_folder(root) if cfg.data.dataset == "folder" else list_csv(root)
    out = Path(to or csv_path).expanduser().resolve()
    # a folder dataset is the folder itself (a new folder in it would be a class); a CSV
    # dataset's folder may take new files, but never over the manifest or an image
    _check_outside(out, root if cfg.data.dataset == "folder" else None,
                   [*listing.paths, root], new_dir=to is not None)
    corrections = corrections or (run_dir / "corrections.csv" if (
        run_dir / "corrections.csv").is_file() else None)
    decided = {} if corrections is None else {c.index: c for c in read_corrections(corrections)
                                               if c.decision != "unsure"}
    rows = plan(analyze_run(run_dir), listing, min_confidence=min_confidence, decided=decided)
    keep = [r for r in rows if r["status"] != "invalid"
            and not (unsure == "drop" and r["status"] == "review")]
    review = [r for r in rows if r["status"] == "review"]
    split_layout = "test" in set(listing.splits)  # keep a train/test split as it was
    if to is not None:
        _write_folder(out, keep, link=link, split_layout=split_layout)
        _write_csv(out / "export.csv", keep)
        _write_csv(out / "review.csv", review)
        review_path = out / "review.csv"
    else:
        for r in rows:
            r["path"] = r["source"]
        _write_csv(out, keep, split=split_layout)
        review_path = out.with_name(out.stem + "-review.csv")
        _write_csv(review_path, review)
    counts = {s: sum(r["status"] == s for r in rows)
              for s in ("reviewed", "invalid", "relabelled", "review", "kept", "not_checked")}
    people = (f"{counts['reviewed']} as reviewed in {corrections} ({counts['invalid']} invalid "
              "left out), " if decided else "")
    return (f"exported {len(keep)} images to {out}: {people}{counts['relabelled']} relabelled "
            f"(model probability >= {min_confidence:g}), {counts['review']} flagged but unsure "
            f"({'kept under their given label' if unsure == 'keep' else 'left out'}; listed "
            f"in {review_path}), {counts['kept']} kept, {counts['not_checked']} not checked "
            "(not in the training set). Your files were only read.")


def plan(run, listing, *, min_confidence: float, decided: dict | None = None) -> list[dict]:
    """One row per file of the listing, in its order: the label to export and why.
    decided: {training index: Correction} of a reviewer's verdicts, which come first."""
    decided = decided or {}
    where = {p: i for i, p in enumerate(run.paths or ())}
    names, iss = run.classes, run.issues
    rows = []
    for path, given, split in zip(listing.paths, listing.labels, listing.splits, strict=True):
        i = where.get(os.path.abspath(path))
        row = {"source": os.path.abspath(path), "given_label": listing.classes[given],
               "split": split, "predicted_label": "", "confidence": "", "label_quality": ""}
        if i is None:
            row |= {"label": row["given_label"], "status": "not_checked"}
        else:
            pred, conf = int(iss.predicted_label[i]), float(iss.pred_probs[i].max())
            status = ("kept" if not iss.is_label_issue[i] else
                      "relabelled" if conf >= min_confidence else "review")
            label = names[pred] if status == "relabelled" else names[run.labels[i]]
            if i in decided:
                c = decided[i]
                status = "invalid" if c.decision == "invalid" else "reviewed"
                label = c.label or label
            row |= {"label": label,
                    "status": status, "predicted_label": names[pred],
                    "confidence": f"{conf:.4f}",
                    "label_quality": f"{iss.label_quality[i]:.4f}"}
        rows.append(row)
    return rows


def _check_outside(out: Path, data_dir: Path | None, files, *, new_dir: bool) -> None:
    data_dir = data_dir.resolve() if data_dir is not None else None
    if data_dir is not None and (out == data_dir or data_dir in out.parents):
        raise DataError(f"{out} is inside your data folder {data_dir}: export to a new place "
                        "(promix never writes into your data)")
    if new_dir and out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(f"{out} already exists and is not an empty folder: name a new one")
    if out in {Path(p).resolve() for p in files}:
        raise DataError(f"{out} is one of your data files: name a new place")


def _write_folder(out: Path, rows: list[dict], *, link: str, split_layout: bool) -> None:
    """Place every file under out/[split/]<label>/; a name taken already gets __2, __3..."""
    place = {"copy": shutil.copy2, "hardlink": os.link, "symlink": os.symlink}[link]
    taken: set[Path] = set()
    for r in rows:
        folder = out / (r["split"] if split_layout else "") / r["label"]
        folder.mkdir(parents=True, exist_ok=True)
        src = Path(r["source"])
        target, n = folder / src.name, 1
        while target in taken:
            n += 1
            target = folder / f"{src.stem}__{n}{src.suffix}"
        taken.add(target)
        place(src, target)
        r["path"] = target.relative_to(out).as_posix()


def _write_csv(path: Path, rows: list[dict], *, split: bool = False) -> None:
    fields = FIELDS[:2] + (["split"] if split else []) + FIELDS[2:]
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)
