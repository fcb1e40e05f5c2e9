"""The review items in other tools' file formats (no server needed), and back.

Label Studio: `labelstudio_tasks.json` (import format: one task per image, the suggestion as
a prediction with its score) and `labelstudio_config.xml` (a single-choice labelling view).
`import_labelstudio` turns Label Studio's JSON export (or JSON-MIN) into corrections.csv.

FiftyOne: a `fiftyone.types.FiftyOneImageClassificationDataset` directory: `labels.json`
(the given labels, their confidence = label_quality), `data.json` (sample id -> image file;
images without a file are written to `data/`), plus `predictions.json` (the suggestions, same
format, for a second label field) and `fields.json` (per sample: mistakenness = 1 -
label_quality, index, path). docs/review.md shows the three lines that load them.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from xml.sax.saxutils import quoteattr

from ..data.base import DataError
from .corrections import COLUMNS, Correction, write_corrections

FROM_NAME, TO_NAME = "label", "image"  # the Choices and Image tags of the labelling view
INVALID, UNSURE = "(not a valid image)", "(unsure)"  # extra choices for those decisions


def labelstudio_config(classes) -> str:
    choices = "".join(f"\n    <Choice value={quoteattr(c)}/>" for c in [*classes, INVALID, UNSURE])
    return (f'<View>\n  <Image name="{TO_NAME}" value="$image"/>\n  <Header value="given: '
            f'$given_label"/>\n  <Choices name="{FROM_NAME}" toName="{TO_NAME}" '
            f'choice="single" showInline="true">{choices}\n  </Choices>\n</View>\n')


def labelstudio_tasks(data: dict, *, root: str | None = None) -> list[dict]:
    """One import task per review item. Images with a file are referenced through Label
    Studio's local-files storage (relative to `root`, the document root); others inline."""
    classes, tasks = data["classes"], []
    for it in data["items"]:
        suggestion = classes[it["sug"]]
        tasks.append({
            "data": {"image": _ls_image(it, root), "index": it["i"], "path": it["path"],
                     "given_label": classes[it["given"]], "suggestion": suggestion,
                     "label_quality": it["q"]},
            "predictions": [{
                "model_version": "promix", "score": it["conf"],
                "result": [{"from_name": FROM_NAME, "to_name": TO_NAME, "type": "choices",
                            "value": {"choices": [suggestion]}, "score": it["conf"]}],
            }],
        })
    return tasks


def _ls_image(item: dict, root: str | None) -> str:
    if item["path"] and root is not None:
        try:
            rel = Path(item["path"]).resolve().relative_to(_data_folder(root))
            return "/data/local-files/?d=" + rel.as_posix()
        except ValueError:
            pass
    return item.get("img") or item["path"]


def export_labelstudio(run_dir: Path, data: dict) -> Path:
    """Write RUN_DIR/labelstudio/{tasks.json, config.xml}; return the folder."""
    from .. import runs

    root = runs.load_config(run_dir).data.root
    out = Path(run_dir) / "labelstudio"
    out.mkdir(exist_ok=True)
    (out / "tasks.json").write_text(json.dumps(labelstudio_tasks(data, root=root), indent=1))
    (out / "config.xml").write_text(labelstudio_config(data["classes"]))
    return out


def import_labelstudio(export: str | Path, run_dir: Path) -> tuple[Path, dict]:
    """Label Studio's JSON (or JSON-MIN) export of tasks made by `export_labelstudio` ->
    RUN_DIR/corrections.csv (corrections-2.csv, ... when taken). A task's last annotation
    that was not cancelled decides; tasks without one are left out."""
    export = Path(export)
    try:
        tasks = json.loads(export.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise DataError(f"{export}: not a Label Studio JSON export ({err})") from err
    if not isinstance(tasks, list):
        raise DataError(f"{export}: a Label Studio JSON export is a list of tasks")
    rows = [c for n, task in enumerate(tasks) if (c := _correction(task, n, export))]
    path = write_corrections(_free_name(Path(run_dir) / "corrections.csv"), rows)
    counts = {d: sum(r.decision == d for r in rows) for d in ("accept", "keep", "relabel",
                                                              "invalid", "unsure")}
    return path, counts


def _correction(task: dict, n: int, source: Path) -> Correction | None:
    data = task.get("data", task)  # JSON-MIN puts the data fields at the top level
    if "index" not in data or "given_label" not in data:
        raise DataError(f"{source} task {n}: no index/given_label in its data; import tasks "
                        "exported by `promix review --to=labelstudio`")
    choice = _choice(task)
    if choice is None:
        return None  # not annotated (yet)
    given, suggestion = data["given_label"], data.get("suggestion")
    if choice == INVALID:
        decision, label = "invalid", ""
    elif choice == UNSURE:
        decision, label = "unsure", ""
    else:
        decision = "keep" if choice == given else "accept" if choice == suggestion else "relabel"
        label = choice
    return Correction(data.get("path") or "", int(data["index"]), given, decision, label)


def _choice(task: dict) -> str | None:
    if "annotations" not in task:  # JSON-MIN: {"label": "dog"} or {"label": {"choices": [..]}}
        value = task.get(FROM_NAME)
        return value.get("choices", [None])[0] if isinstance(value, dict) else value
    done = [a for a in task["annotations"] if not a.get("was_cancelled")]
    for result in (done[-1]["result"] if done else []):
        if result.get("from_name") == FROM_NAME and result.get("type") == "choices":
            return result["value"]["choices"][0]
    return None


def export_fiftyone(run_dir: Path, data: dict) -> Path:
    """Write RUN_DIR/fiftyone/ (module docstring); return the folder."""
    out = Path(run_dir) / "fiftyone"
    out.mkdir(exist_ok=True)
    classes, files, labels, predictions, fields = data["classes"], {}, {}, {}, {}
    for it in data["items"]:
        uid = f"{it['i']:06d}"
        if it["path"]:
            files[uid] = str(Path(it["path"]).resolve())
        elif it.get("img", "").startswith("data:image/png;base64,"):
            (out / "data").mkdir(exist_ok=True)
            png = out / "data" / f"{uid}.png"
            png.write_bytes(base64.b64decode(it["img"].split(",", 1)[1]))
            files[uid] = str(png.resolve())
        else:
            raise DataError(f"sample {it['i']} has neither a file nor an image to export")
        labels[uid] = {"label": classes[it["given"]], "confidence": it["q"]}
        predictions[uid] = {"label": classes[it["sug"]], "confidence": it["conf"]}
        fields[uid] = {"mistakenness": round(1 - it["q"], 4), "index": it["i"],
                       "path": it["path"]}
    for name, obj in (("data.json", files), ("fields.json", fields),
                      ("labels.json", {"classes": classes, "labels": labels}),
                      ("predictions.json", {"classes": classes, "labels": predictions})):
        (out / name).write_text(json.dumps(obj, indent=1))
    return out


def _free_name(path: Path) -> Path:
    """path, or path-2, path-3... when taken: an import never overwrites earlier decisions."""
    n = 1
    while path.exists():
        n += 1
        path = path.with_name(f"corrections-{n}.csv")
    return path


def _data_folder(root: str) -> Path:
    base = Path(root).expanduser().resolve()
    return base.parent if base.suffix.lower() == ".csv" else base


__all__ = ["COLUMNS", "export_fiftyone", "export_labelstudio", "import_labelstudio",
           "labelstudio_config", "labelstudio_tasks"]
