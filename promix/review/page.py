"""review.html: one self-contained page (script, style and images inline) on which a person
decides, image by image, whether the flagged labels are wrong. Works offline from file://.

The Python side gathers the items (flagged images, worst first) from the run directory with
the report's own analysis (`report.table.analyze_run`); page.js and page.css, shipped with
the package, do the rest in the browser (docs/review.md lists the keys).
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import json
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image

THUMB_MAX = 160  # larger images are shrunk to this many pixels on their longer side
PEER_TOP = 3  # classes shown per peer


def review_items(run_dir: Path, *, top: int | None = None, limit: int = 2000) -> dict:
    """What the page shows, as JSON-ready data.

    Items are the flagged images (is_label_issue), worst first; with `top`, the `top` most
    suspicious images whether flagged or not. At most `limit` items (the page embeds every
    thumbnail). Labels the run already had verified are left out.
    """
    from .. import runs
    from ..report import _training_images
    from ..report.table import _softmax, analyze_run

    run_dir = Path(run_dir)
    run = analyze_run(run_dir)
    out = runs.load_tensors(run_dir / "train_outputs.safetensors")
    peers = [_softmax(out[f"logits{k}"].numpy()) for k in (1, 2) if f"logits{k}" in out]
    verified = out["verified"].numpy().astype(bool) if "verified" in out else None
    iss = run.issues
    order = iss.order if verified is None else iss.order[~verified[iss.order]]
    chosen = order[:top] if top is not None else order[iss.is_label_issue[order]]
    chosen = chosen[:limit]
    images, note = _training_images(run_dir, run, None)
    items = [_item(i, run, peers, images) for i in chosen.tolist()]
    digest = hashlib.sha256(run.labels.astype(np.int64).tobytes()).hexdigest()[:12]
    return {
        "run": run_dir.name,
        "key": f"{run_dir.name}:{digest}",  # localStorage key: same run, same labels
        "classes": list(run.classes),
        "flagged": int(iss.is_label_issue.sum()),
        "samples": len(run.labels),
        "items": items,
        "note": note,
    }


def _item(i: int, run, peers: list[np.ndarray], images) -> dict:
    iss = run.issues
    agreed = int(iss.suggested_label[i]) >= 0
    suggestion = int(iss.suggested_label[i]) if agreed else int(iss.predicted_label[i])
    path = run.paths[i] if run.paths is not None else ""
    item = {
        "i": i,
        "path": path,
        "name": Path(path).name if path else f"sample {i}",
        "given": int(run.labels[i]),
        "sug": suggestion,
        "agreed": agreed,  # both peers confident (> τ) in it: a suggestion, not a guess
        "conf": round(float(iss.pred_probs[i, suggestion]), 4),
        "q": round(float(iss.label_quality[i]), 4),
        "peers": [[[int(c), round(float(p[i, c]), 3)] for c in np.argsort(-p[i])[:PEER_TOP]]
                  for p in peers],
    }
    if images is not None:
        item["img"] = thumbnail(images[i])
    elif path:
        item["img"] = Path(path).resolve().as_uri()  # the file itself, when on this machine
    return item


def thumbnail(image) -> str:
    """A PNG data URL of one (C, H, W) uint8 image, shrunk to THUMB_MAX when larger; the
    page scales small images up with crisp pixels."""
    x = np.asarray(image.cpu() if hasattr(image, "cpu") else image)
    pil = Image.fromarray(x[0] if x.shape[0] == 1 else x.transpose(1, 2, 0))
    if max(pil.size) > THUMB_MAX:
        pil.thumbnail((THUMB_MAX, THUMB_MAX), Image.LANCZOS)
    buf = io.BytesIO()
    pil.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def render_page(data: dict) -> str:
    """The page's HTML with its data, script and style inline."""
    assets = resources.files("promix.review")
    script = assets.joinpath("page.js").read_text(encoding="utf-8")
    style = assets.joinpath("page.css").read_text(encoding="utf-8")
    payload = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    title = html.escape(f"promix review: {data['run']}")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{title}</title><style>{style}</style></head>\n<body>\n"
        f"<header><h1>{title}</h1><div id=\"progress\"></div></header>\n"
        "<nav id=\"filters\"></nav>\n<main id=\"card\"></main>\n<div id=\"strip\"></div>\n"
        f"<footer id=\"help\"></footer>\n"
        f"<script type=\"application/json\" id=\"review-data\">{payload}</script>\n"
        f"<script>{script}</script>\n</body></html>\n"
    )
