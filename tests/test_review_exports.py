"""Label Studio and FiftyOne files: the documented schemas, the import back as corrections,
and the libraries' own parsers where they are installed."""

import base64
import io
import json
import xml.etree.ElementTree as ET

import pytest
from PIL import Image

from promix.data.base import DataError
from promix.review.corrections import read_corrections
from promix.review.exports import (
    INVALID,
    UNSURE,
    export_fiftyone,
    import_labelstudio,
    labelstudio_config,
    labelstudio_tasks,
)

CLASSES = ["cat", "dog", "fox"]


def png_url(value):
    buf = io.BytesIO()
    Image.new("RGB", (4, 4), (value, 0, 0)).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def review_data(tmp_path, with_files):
    items = []
    for n, (i, given, sug) in enumerate([(7, 0, 1), (3, 2, 0), (5, 1, 2)]):
        path = ""
        if with_files:
            path = str(tmp_path / "imgs" / CLASSES[given] / f"{i}.png")
        items.append({"i": i, "path": path, "given": given, "sug": sug, "agreed": True,
                      "conf": 0.9 - n / 10, "q": 0.1 + n / 10, "peers": [], "img": png_url(n)})
    return {"run": "r", "classes": CLASSES, "items": items}


def test_labelstudio_tasks_follow_the_import_format(tmp_path):
    tasks = labelstudio_tasks(review_data(tmp_path, True), root=str(tmp_path / "imgs"))
    assert len(tasks) == 3
    first = tasks[0]
    assert first["data"]["image"] == "/data/local-files/?d=cat/7.png"
    assert first["data"]["given_label"] == "cat" and first["data"]["index"] == 7
    (prediction,) = first["predictions"]
    assert prediction["score"] == pytest.approx(0.9)
    (result,) = prediction["result"]
    assert result == {"from_name": "label", "to_name": "image", "type": "choices",
                      "value": {"choices": ["dog"]}, "score": pytest.approx(0.9)}
    inline = labelstudio_tasks(review_data(tmp_path, False))  # no files: the image inline
    assert inline[0]["data"]["image"].startswith("data:image/png;base64,")


def test_labelstudio_config_names_every_choice():
    view = ET.fromstring(labelstudio_config(CLASSES))
    image, choices = view.find("Image"), view.find("Choices")
    assert image.get("name") == "image" and image.get("value") == "$image"
    assert choices.get("name") == "label" and choices.get("toName") == "image"
    assert [c.get("value") for c in choices] == CLASSES + [INVALID, UNSURE]


def annotated(task, choice, cancelled=False):
    result = [{"from_name": "label", "to_name": "image", "type": "choices",
               "value": {"choices": [choice]}}]
    return {**task, "id": task["data"]["index"],
            "annotations": [{"result": result, "was_cancelled": cancelled}]}


def test_a_labelstudio_export_comes_back_as_corrections(tmp_path):
    tasks = labelstudio_tasks(review_data(tmp_path, True), root=str(tmp_path / "imgs"))
    export = [annotated(tasks[0], "dog"),  # the suggestion: accept
              annotated(tasks[1], "fox"),  # the given label: keep
              {**annotated(tasks[2], "cat"), "annotations": [  # the last valid one decides
                  annotated(tasks[2], "fox")["annotations"][0],
                  annotated(tasks[2], "cat")["annotations"][0],
                  annotated(tasks[2], INVALID, cancelled=True)["annotations"][0]]}]
    (tmp_path / "export.json").write_text(json.dumps(export))
    path, counts = import_labelstudio(tmp_path / "export.json", tmp_path)
    rows = read_corrections(path)
    assert [(r.index, r.given_label, r.decision, r.label) for r in rows] == [
        (7, "cat", "accept", "dog"), (3, "fox", "keep", "fox"), (5, "dog", "relabel", "cat")]
    assert rows[0].path.endswith("cat/7.png")
    assert counts == {"accept": 1, "keep": 1, "relabel": 1, "invalid": 0, "unsure": 0}


def test_labelstudio_json_min_and_the_extra_choices(tmp_path):
    tasks = labelstudio_tasks(review_data(tmp_path, False))
    export = [{**tasks[0]["data"], "label": INVALID}, {**tasks[1]["data"], "label": UNSURE},
              {**tasks[2]["data"]}]  # not annotated: left out
    (tmp_path / "min.json").write_text(json.dumps(export))
    rows = read_corrections(import_labelstudio(tmp_path / "min.json", tmp_path)[0])
    assert [(r.index, r.decision, r.label) for r in rows] == [(7, "invalid", ""),
                                                             (3, "unsure", "")]


@pytest.mark.parametrize("text, message", [
    ("{not json", "not a Label Studio JSON export"),
    ('{"a": 1}', "is a list of tasks"),
    ('[{"data": {"image": "x.png"}}]', "no index/given_label"),
])
def test_bad_labelstudio_exports(tmp_path, text, message):
    (tmp_path / "e.json").write_text(text)
    with pytest.raises(DataError, match=message):
        import_labelstudio(tmp_path / "e.json", tmp_path)


def test_fiftyone_directory_layout(tmp_path):
    out = export_fiftyone(tmp_path, review_data(tmp_path, False))
    files = json.loads((out / "data.json").read_text())
    labels = json.loads((out / "labels.json").read_text())
    predictions = json.loads((out / "predictions.json").read_text())
    fields = json.loads((out / "fields.json").read_text())
    assert labels["classes"] == CLASSES and sorted(files) == ["000003", "000005", "000007"]
    assert labels["labels"]["000007"] == {"label": "cat", "confidence": pytest.approx(0.1)}
    assert predictions["labels"]["000003"] == {"label": "cat", "confidence": pytest.approx(0.8)}
    assert fields["000005"]["mistakenness"] == pytest.approx(0.7)
    with Image.open(files["000003"]) as im:  # no file in the data: written as PNG
        assert im.getpixel((0, 0)) == (1, 0, 0)


def test_fiftyone_reads_it(tmp_path):
    """FiftyOne's own importer (no database needed): both label files, the data.json map."""
    importers = pytest.importorskip("fiftyone.utils.data.importers",
                                    reason="pip install fiftyone to check with its importer")
    out = export_fiftyone(tmp_path, review_data(tmp_path, False))
    for labels, expected in (("labels.json", ["fox", "dog", "cat"]),
                             ("predictions.json", ["cat", "fox", "dog"])):
        importer = importers.FiftyOneImageClassificationDatasetImporter(
            dataset_dir=str(out), labels_path=labels)
        with importer:
            assert importer.get_dataset_info() == {"classes": CLASSES}
            samples = list(importer)  # (image path, metadata, Classification), sorted by id
        assert [s[2].label for s in samples] == expected
        assert [s[0].rsplit("/", 1)[-1] for s in samples] == ["000003.png", "000005.png",
                                                               "000007.png"]


def test_labelstudio_sdk_accepts_the_tasks(tmp_path):
    sdk = pytest.importorskip("label_studio_sdk.label_interface",
                              reason="pip install label-studio-sdk to check with its parser")
    interface = sdk.LabelInterface(labelstudio_config(CLASSES))
    for task in labelstudio_tasks(review_data(tmp_path, False)):
        # label-studio-sdk 2.1.2's validate_task calls validate_prediction() without its
        # argument when a task has predictions: check the data and the predictions apart
        assert interface.validate_task({k: v for k, v in task.items() if k != "predictions"})
        for prediction in task["predictions"]:
            assert interface.validate_prediction(prediction)
        wrong = json.loads(json.dumps(task["predictions"][0]))
        wrong["result"][0]["value"]["choices"] = ["wolf"]
        assert not interface.validate_prediction(wrong)  # the check can fail
