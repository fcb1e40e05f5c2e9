"""report.html: one self-contained page (figures and thumbnails inlined as base64 PNG, no
external resource) that a person opens in a browser."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import numpy as np
from PIL import Image

from .table import RunIssues

THUMB_SIZE = 96  # gallery thumbnails are upscaled (nearest) to at least this many pixels
TABLE_ROWS = 50  # rows of the most-suspicious table

# The page marks every <img> with data-loaded="1" once it has decoded (naturalWidth > 0) and
# counts them on <body>: a reader sees nothing of it; the browser test reads it back.
_MARK_IMAGES = """
window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.images), loaded = 0;
  images.forEach(function (img) {
    var ok = img.complete && img.naturalWidth > 0;
    img.setAttribute("data-loaded", ok ? "1" : "0");
    if (ok) { loaded += 1; }
  });
  document.body.setAttribute("data-images", images.length);
  document.body.setAttribute("data-images-loaded", loaded);
});
"""

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; font-size: 0.85em; }
td, th { border: 1px solid #ddd; padding: 3px 8px; text-align: right; }
th { background: #f3f3f3; } td.l, th.l { text-align: left; }
.kpi { display: inline-block; margin: 0 2em 1em 0; }
.kpi b { display: block; font-size: 1.6em; }
figure { display: inline-block; margin: 0 1em 1em 0; vertical-align: top; }
figure img { max-width: 100%; }
.gallery { display: flex; flex-wrap: wrap; gap: 10px; }
.card { width: 130px; font-size: 0.75em; text-align: center; border: 1px solid #ddd;
        padding: 4px; overflow-wrap: anywhere; }
.card img { image-rendering: pixelated; }
.issue { color: #b00; } .muted { color: #777; }
"""


def write_html(path: Path, run: RunIssues, summary: dict, class_rows: list[dict],
               issue_rows: list[dict], plots: dict[str, Path], images=None, *,
               top: int = 48, title: str = "promix label issues", sections=()) -> Path:
    """Write the page. images: the training images (N, C, H, W) uint8 in dataset order, or
    None (the gallery then says how to get it); issue_rows: most suspicious first;
    sections: extra HTML sections (the annotators'), placed before the tables."""
    parts = [f"<h1>{_e(title)}</h1>", _overview(summary)]
    parts.append("<h2>Figures</h2>")
    parts += [f'<figure><img alt="{_e(name)}" src="{_png_file(p)}">'
              f"<figcaption>{_e(name)}</figcaption></figure>" for name, p in plots.items()]
    parts.append(f"<h2>The {top} most suspicious labels</h2>")
    parts.append(_gallery(run, images, top))
    parts += list(sections)
    parts.append("<h2>Per class</h2>" + _table(class_rows))
    parts.append(f"<h2>Most suspicious labels (first {TABLE_ROWS} rows of label_issues.csv)"
                 "</h2>" + _table(issue_rows[:TABLE_ROWS]))
    page = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{_e(title)}</title><style>{_STYLE}</style>"
            f"<script>{_MARK_IMAGES}</script></head>\n<body>\n" + "\n".join(parts)
            + "\n</body></html>\n")
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(path)
    return path


def _overview(s: dict) -> str:
    est = s["estimated"]
    low, high = est["noise_rate_interval_95"]
    kpis = [("estimated clean share (health score)", f"{s['health_score']:.1%}"),
            ("estimated wrong labels", f"{est['wrong_labels']:,} ({est['noise_rate']:.1%}, "
                                       f"95% interval {low:.1%}-{high:.1%})"),
            ("flagged as label issues", f"{s['label_issues']:,} of {s['samples']:,}"),
            ("suggested labels", f"{s['suggested_labels']:,}")]
    html_kpis = "".join(f'<div class="kpi"><b>{_e(v)}</b>{_e(k)}</div>' for k, v in kpis)
    sources = ", ".join(f"{k}: {v:,}" for k, v in s["selected_by"].items())
    late = (" averaged over the second half of training"
            if s.get("counted_from") == "late_probs" else "")
    text = (f"<p class=\"muted\">method {_e(s['method'])}; label_quality = "
            f"{_e(s['label_quality'])}; flags: per class, as many as the calibrated confident "
            f"joint of the peers' predictions{late} estimates are wrong, lowest label_quality "
            f"first ({_e(s['filter_by'])}); selected by "
            f"{_e(sources)}</p>{html_kpis}")
    if "caveat" in est:
        text += f"<p><b>Note:</b> {_e(est['caveat'])}.</p>"
    if "truth" not in s:
        return text + ("<p>The noise figures are <b>estimates</b> from the model's predictions: "
                       "no ground truth was given, so nothing here is measured against true "
                       "labels. To measure the flags' precision and recall, verify some labels "
                       "and pass them: <code>promix issues RUN_DIR --truth=checked.csv</code> "
                       "(columns path,label).</p>")
    t, d = s["truth"], s["truth"]["detection"]
    measured = [("wrong labels", f"{t['wrong']:,} ({t['noise_rate']:.1%})"),
                ("flag precision", f"{d['precision']:.1%}"), ("flag recall", f"{d['recall']:.1%}"),
                ("flag F1", f"{d['f1']:.3f}"), ("ranking AUROC", f"{d['auroc']:.3f}"),
                ("ranking AUPRC", f"{d['auprc']:.3f}")]
    return text + (f"<h2>Measured on {t['size']:,} labels: {_e(t['source'])}</h2>"
                   + "".join(f'<div class="kpi"><b>{_e(v)}</b>{_e(k)}</div>'
                             for k, v in measured))


def _gallery(run: RunIssues, images, top: int) -> str:
    if images is None:
        return ("<p class=\"muted\">No gallery: the training images could not be read. Run "
                "<code>promix issues RUN_DIR</code> where the data is, or pass the Dataset to "
                "<code>write_report(run_dir, data)</code>.</p>")
    iss, names, cards = run.issues, run.classes, []
    verified = {} if run.verified is None else dict(zip(run.verified.index.tolist(),
                                                        run.verified.labels.tolist(),
                                                        strict=True))
    for i in iss.order[:top].tolist():
        given = names[run.labels[i]]
        guess = int(iss.suggested_label[i])
        guess_text = (f"suggested <b>{_e(names[guess])}</b>" if guess >= 0 else
                      f"<span class=\"muted\">predicted {_e(names[iss.predicted_label[i]])}"
                      "</span>")
        truth = ""
        if run.true_labels is not None:
            truth = f"<br><span class=\"muted\">true {_e(names[run.true_labels[i]])}</span>"
        elif i in verified:
            truth = f"<br><span class=\"muted\">verified {_e(names[verified[i]])}</span>"
        name = run.shown_path(i)
        file_line = f'<br><span class="muted" title="{_e(name)}">{_e(name)}</span>' if name else ""
        flag = ' class="issue"' if iss.is_label_issue[i] else ""
        cards.append(
            f'<div class="card"><img alt="sample {i}" src="{_thumbnail(images[i])}"><br>'
            f"#{i} q={iss.label_quality[i]:.3f}{file_line}<br><span{flag}>given {_e(given)}"
            f"</span><br>{guess_text}{truth}</div>")
    return '<div class="gallery">' + "".join(cards) + "</div>"


def _thumbnail(image) -> str:
    """A data: URL of one (C, H, W) uint8 image, upscaled by an integer factor."""
    x = np.asarray(image.cpu() if hasattr(image, "cpu") else image)
    pil = Image.fromarray(x[0] if x.shape[0] == 1 else x.transpose(1, 2, 0))
    scale = max(1, -(-THUMB_SIZE // max(pil.size)))
    pil = pil.resize((pil.width * scale, pil.height * scale), Image.NEAREST)
    buf = io.BytesIO()
    pil.save(buf, format="PNG")
    return _data_url(buf.getvalue())


def _png_file(path: Path) -> str:
    return _data_url(Path(path).read_bytes())


def _data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _table(rows: list[dict]) -> str:
    if not rows:
        return "<p class=\"muted\">(empty)</p>"
    text = {"path", "class", "given_label", "predicted_label", "suggested_label",
            "selected_by", "true_label", "verified_label"}
    head = "".join(f'<th{" class=l" if k in text else ""}>{_e(k)}</th>' for k in rows[0])
    body = "".join(
        "<tr>" + "".join(f'<td{" class=l" if k in text else ""}>{_e(v)}</td>'
                         for k, v in row.items()) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _e(value) -> str:
    return html.escape(str(value))
