"""What `promix review` does, called by cli.cmd_review."""

from __future__ import annotations

from pathlib import Path

from ..data.base import DataError


def review(run_dir: Path, *, top: int | None = None, limit: int = 2000, to: str | None = None,
           from_labelstudio: str | None = None) -> str:
    """Write review.html (and an export for another tool), or import a Label Studio export
    as corrections.csv; return what to print."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.json").is_file():
        raise FileNotFoundError(f"{run_dir} is not a promix run directory (no config.json)")
    if limit < 1 or (top is not None and top < 1):
        raise DataError("--top and --limit must be at least 1")
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
