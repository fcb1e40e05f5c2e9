"""The annotators' section of report.html, from noise.json's "annotators" entry."""

from __future__ import annotations

import html


def annotator_section(info: dict) -> str:
    """HTML: the consensus method, agreement, and per annotator its label count, estimated
    accuracy and confusion matrix (rows: the consensus' estimate of the true class)."""
    e, classes = html.escape, info["classes"]
    head = (f"<h2>Annotators</h2><p>{info['annotated']:,} images labelled by "
            f"{len(info['annotators'])} annotators; consensus by {e(info['method'])}; "
            f"{info['unanimous']:,} unanimous, mean agreement with the consensus "
            f"{info['mean_agreement']:.1%}. Accuracies and confusions are estimated from the "
            "labels alone (no ground truth).</p>")
    rows = "".join(f"<tr><td class=l>{e(a['name'])}</td><td>{a['labels']:,}</td>"
                   f"<td>{a['accuracy']:.1%}</td></tr>" for a in info["annotators"])
    table = ("<table><tr><th class=l>annotator</th><th>labels</th><th>estimated accuracy</th>"
             f"</tr>{rows}</table>")
    return head + table + "".join(_confusion(a, classes) for a in info["annotators"])


def _confusion(annotator: dict, classes: list[str]) -> str:
    e = html.escape
    head = "".join(f"<th>{e(c)}</th>" for c in classes)
    body = "".join(
        f"<tr><th class=l>{e(c)}</th>" + "".join(f"<td>{v:.2f}</td>" for v in row) + "</tr>"
        for c, row in zip(classes, annotator["confusion"], strict=True))
    return (f"<figure><figcaption>{e(annotator['name'])}: P(says column | true row)"
            f"</figcaption><table><tr><th></th>{head}</tr>{body}</table></figure>")
