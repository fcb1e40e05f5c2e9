"""timm backbones: training, --weights, --pretrained through timm's own loader, frozen stages,
the backbone learning rate, and the one-line errors that come before any decoding."""

import pickle

import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from promix import cli
from promix.config import Config, ConfigError
from promix.data.load import dataset_from_arrays
from promix.models import create_model, param_groups
from promix.models import plan as plan_mod
from promix.models.plan import build_array_data, build_data, plan_model
from promix.models.timm_backbone import freeze_stages, timm_backbone
from promix.models.weights import load_weights, read_weights
from promix.trainer import Trainer

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_data(n=24, size=32, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % classes
    images = (torch.rand(n, 3, size, size, generator=g) * 60 + labels.view(-1, 1, 1, 1) * 60)
    return dataset_from_arrays(images.to(torch.uint8).numpy(), labels.numpy(),
                               test_images=images[:6].to(torch.uint8).numpy(),
                               test_labels=labels[:6].numpy())


def tiny_cfg(model: str, **model_fields) -> Config:
    cfg = Config()
    cfg.model.name = model
    for key, value in model_fields.items():
        setattr(cfg.model, key, value)
    cfg.optim.batch_size = 8
    cfg.schedule.epochs, cfg.schedule.warmup_epochs = 2, 1  # one warm-up, one ProMix epoch
    cfg.promix.tau = 0.5
    cfg.run.progress, cfg.run.eval_batch_size = False, 16
    return cfg


def flat(net) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in net.parameters()])


@pytest.mark.parametrize("name", ["resnet18", "test_convnext", "test_vit"])
def test_random_init_timm_models_train_promix_steps(name):
    trainer = Trainer(tiny_cfg(f"timm:{name}"), tiny_data())
    before = [flat(n).clone() for n in trainer.state.nets]
    result = trainer.fit()
    assert [r["phase"] for r in trainer.history] == ["warmup", "promix"]
    assert all(torch.isfinite(torch.tensor(v)) for r in trainer.history
               for k, v in r.items() if k.startswith("loss/"))
    assert all(not torch.equal(b, flat(n))
               for b, n in zip(before, trainer.state.nets, strict=True))
    assert result.test_accuracy is not None


@pytest.mark.parametrize("name, dim", [("test_convnext", 64), ("mobilenetv3_large_100", 1280)])
def test_heads_on_pooled_features(name, dim):
    """MobileNetV3's pooled output is its 1280-wide pre-logits layer, not num_features (960)."""
    net = create_model(f"timm:{name}", num_classes=5)
    out = net(torch.zeros(2, 3, 32, 32))
    assert out.logits.shape == out.pseudo_logits.shape == (2, 5)
    assert net.linear.in_features == dim


# ----------------------------------------------------------------------------- --weights


def test_weights_round_trip_exactly(tmp_path):
    src = create_model("timm:test_convnext", num_classes=3)
    file = tmp_path / "backbone.safetensors"
    save_file(src.backbone.state_dict(), str(file))
    dst = create_model("timm:test_convnext", num_classes=3)
    assert not torch.equal(flat(src.backbone), flat(dst.backbone))  # different random init
    note = load_weights(dst, read_weights(str(file)), model_name="timm:test_convnext")
    for (k, a), b in zip(src.backbone.state_dict().items(), dst.backbone.state_dict().values(),
                         strict=True):
        assert torch.equal(a, b), k
    assert "new heads" in note


def test_weights_from_a_promix_run_keep_matching_heads(tmp_path):
    src = create_model("timm:test_resnet", num_classes=4)
    tensors = {f"peer1.{k}": v for k, v in src.state_dict().items()}
    tensors |= {f"peer2.{k}": torch.zeros_like(v) for k, v in src.state_dict().items()}
    file = tmp_path / "model.safetensors"
    save_file(tensors, str(file), metadata={"promix.model": "timm:test_resnet",
                                            "promix.classes": '["a", "b", "c", "d"]',
                                            "promix.normalization": "[[0.1,0.2,0.3],[1,1,1]]"})
    weights = read_weights(str(file))
    assert weights.normalization == ((0.1, 0.2, 0.3), (1, 1, 1))
    same = create_model("timm:test_resnet", num_classes=4)
    load_weights(same, weights, model_name="timm:test_resnet")
    for (k, a), b in zip(src.state_dict().items(), same.state_dict().values(), strict=True):
        assert torch.equal(a, b), k  # peer1, heads included
    renamed = create_model("timm:test_resnet", num_classes=4)
    note = load_weights(renamed, weights, model_name="x", classes=("a", "b", "c", "x"))
    assert "other classes" in note and not torch.equal(renamed.linear.weight, src.linear.weight)
    other = create_model("timm:test_resnet", num_classes=7)
    assert "other classes" in load_weights(other, weights, model_name="x")
    assert torch.equal(flat(other.backbone), flat(src.backbone))


def test_timm_checkpoint_with_imagenet_classifier_and_arch(tmp_path):
    full = timm_backbone("timm:test_resnet")  # the same architecture with a 1000-class fc:
    full_sd = dict(full.state_dict())
    full_sd |= {"fc.weight": torch.randn(1000, 96), "fc.bias": torch.randn(1000)}
    file = tmp_path / "ckpt.pth"
    torch.save({"arch": "test_resnet", "epoch": 3, "state_dict":
                {f"module.{k}": v for k, v in full_sd.items()}}, file)
    net = create_model("timm:test_resnet", num_classes=3)
    load_weights(net, read_weights(str(file)), model_name="timm:test_resnet")
    assert torch.equal(flat(net.backbone), flat(full))


def test_grayscale_images_adapt_the_first_convolution(tmp_path):
    rgb = timm_backbone("timm:test_resnet")
    file = tmp_path / "rgb.safetensors"
    save_file(rgb.state_dict(), str(file))
    gray = create_model("timm:test_resnet", num_classes=2, in_channels=1)
    load_weights(gray, read_weights(str(file)), model_name="timm:test_resnet")
    key = f"{rgb.pretrained_cfg['first_conv']}.weight"
    assert torch.allclose(gray.backbone.state_dict()[key], rgb.state_dict()[key].sum(1, True))


class Payload:  # an object a malicious pickle would carry
    pass


@pytest.mark.parametrize("kind, match", [
    ("missing", "no such file"),
    ("garbage", "not a safetensors file or a checkpoint"),
    ("pickle", "not a safetensors file or a checkpoint"),
    ("other_arch", "weights for resnet18, not for timm:test_convnext"),
    ("no_tensors", "holds no named tensors"),
])
def test_bad_weights_files_are_one_line_errors(tmp_path, kind, match):
    file = tmp_path / ("w.safetensors" if kind == "garbage" else "w.pth")
    if kind == "garbage":
        file.write_bytes(b"\x00\x01 not safetensors")
    elif kind == "pickle":
        file.write_bytes(pickle.dumps({"x": Payload()}))
    elif kind == "other_arch":
        torch.save({"arch": "resnet18", "state_dict": timm_backbone("timm:resnet18").state_dict()},
                   file)
    elif kind == "no_tensors":
        torch.save({"epoch": 1}, file)
    cfg = tiny_cfg("timm:test_convnext", weights=str(file))
    with pytest.raises(ConfigError, match=match) as err:
        plan_model(cfg)
    assert "\n" not in str(err.value)


# ----------------------------------------------------------------------------- pretrained


def test_pretrained_loads_through_timm_from_a_local_file(tmp_path, monkeypatch):
    """timm's own loader (pretrained_cfg_overlay=dict(file=...)) on a file made here: the
    classifier is dropped and every backbone tensor equals the file's."""
    src = timm_backbone("timm:test_convnext")
    sd = dict(src.state_dict()) | {"head.fc.weight": torch.randn(1000, 64),
                                   "head.fc.bias": torch.randn(1000)}
    file = tmp_path / "pretrained.safetensors"
    save_file(sd, str(file))
    net = timm_backbone("timm:test_convnext", pretrained=True, pretrained_file=str(file))
    assert torch.equal(flat(net), flat(src))
    # the trainer asks plan.pretrained_file where the weights are (the hub cache, here ours)
    monkeypatch.setattr("promix.trainer.pretrained_file", lambda name: str(file))
    monkeypatch.setattr(plan_mod, "pretrained_file", lambda name: str(file))
    trainer = Trainer(tiny_cfg("timm:test_convnext", pretrained=True), tiny_data())
    assert all(torch.equal(flat(n.backbone), flat(src)) for n in trainer.state.nets)


def test_pretrained_calls_timm_with_pretrained_true(monkeypatch):
    import timm

    calls = []
    real = timm.create_model
    monkeypatch.setattr(timm, "create_model", lambda *a, **k: calls.append(k) or real(
        *a, **{**k, "pretrained": False}))
    timm_backbone("timm:test_resnet", pretrained=True, pretrained_file="/x/w.safetensors")
    assert calls[0]["pretrained"] is True and calls[0]["num_classes"] == 0
    assert calls[0]["pretrained_cfg_overlay"] == {"file": "/x/w.safetensors"}


def test_a_failed_download_is_caught_before_decoding(monkeypatch, capsys):
    """The hub answers but the download fails (a proxy, a refused file): the same message
    or fallback as when it cannot be reached, before any image is decoded."""
    monkeypatch.setattr(plan_mod, "pretrained_file", lambda name: None)  # "reachable"

    def refused(*args, **kwargs):
        raise RuntimeError("HTTP 403 from the proxy")

    monkeypatch.setattr(plan_mod, "timm_backbone", refused)
    with pytest.raises(ConfigError, match="HTTP 403 from the proxy"):
        plan_model(tiny_cfg("timm:test_resnet", pretrained=True))
    cfg = tiny_cfg("timm:test_resnet", pretrained=True, fallback="small_cnn")
    plan_model(cfg)
    assert cfg.model.name == "small_cnn"


def test_unreachable_pretrained_weights_fall_back_or_fail(monkeypatch, capsys):
    def offline(name):
        raise OSError("cannot reach huggingface.co: Name or service not known")

    monkeypatch.setattr(plan_mod, "pretrained_file", offline)
    with pytest.raises(ConfigError, match="--weights=FILE"):
        plan_model(tiny_cfg("timm:test_resnet", pretrained=True))
    cfg = tiny_cfg("timm:test_resnet", pretrained=True, fallback="small_cnn")
    plan_model(cfg)
    assert cfg.model.name == "small_cnn" and not cfg.model.pretrained
    assert "training small_cnn from scratch instead" in capsys.readouterr().out


# ----------------------------------------------------------------------------- optimizer


def test_backbone_lr_scale_and_frozen_stages():
    cfg = tiny_cfg("timm:test_resnet", backbone_lr_scale=0.1, freeze_stages=1)
    trainer = Trainer(cfg, tiny_data())
    net = trainer.state.nets[0]
    stem = [p for n, p in net.backbone.named_parameters() if n.startswith(("conv1", "bn1"))]
    assert stem and all(not p.requires_grad for p in stem)
    frozen = {n: t.clone() for n, t in net.backbone.state_dict().items()
              if n.startswith(("conv1", "bn1"))}
    trainer.fit(stop_epoch=1)
    lr = trainer.schedule.at(0).lr
    scales = sorted({g["lr"] / lr for g in trainer.state.optimizer.param_groups})
    assert scales == pytest.approx([0.1, 1.0])
    assert len(trainer.state.optimizer.param_groups) == 4  # (backbone, heads) per peer
    state = net.backbone.state_dict()
    assert all(torch.equal(t, state[n]) for n, t in frozen.items())  # BN statistics too


def test_param_groups_cover_every_trainable_parameter_once():
    net = create_model("timm:test_resnet", num_classes=3)
    freeze_stages(net.backbone, 2)
    grouped = [p for g in param_groups(net, 0.5) for p in g["params"]]
    trainable = [p for p in net.parameters() if p.requires_grad]
    assert len(grouped) == len({id(p) for p in grouped}) == len(trainable)


@pytest.mark.parametrize("name", ["test_vit", "test_convnext", "test_efficientnet"])
def test_frozen_stages_of_other_families(name):
    """ViTs keep parameters on the model itself (cls_token, pos_embed); those freeze too."""
    net = create_model(f"timm:{name}", num_classes=3)
    frozen = freeze_stages(net.backbone, 1)
    assert frozen and all(not p.requires_grad for n, p in net.backbone.named_parameters()
                          if any(n == f or n.startswith(f + ".") for f in frozen))
    assert any(p.requires_grad for p in net.backbone.parameters())
    out = net(torch.zeros(2, 3, 32, 32)).logits.sum()
    out.backward()  # still trains


def test_too_many_frozen_stages_is_an_error():
    with pytest.raises(ConfigError, match="freeze_stages=99"):
        freeze_stages(timm_backbone("timm:test_resnet"), 99)


# ----------------------------------------------------------------------------- before decoding


def photo_folder(root, n=4, size=(48, 40)):
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", size, (40 * i, 200 if c == "a" else 20, 90)).save(
                root / c / f"{i}.png")
    return root


@pytest.mark.parametrize("args, match", [
    (["--model=timm:resnet18x"], "unknown timm model 'resnet18x'.*timm:resnet18"),
    (["--model=resnet19"], "'resnet19' is not a registered model"),
    (["--model=timm:test_vit", "--image_size=40"], "timm:test_vit cannot take 40x40 images"),
    (["--model=small_cnn", "--pretrained=true"], "--pretrained applies to timm models"),
    (["--model=timm:test_resnet", "--weights=/nonexistent.safetensors"], "no such file"),
])
def test_model_errors_come_before_any_decoding(tmp_path, capsys, monkeypatch, args, match):
    root = photo_folder(tmp_path / "photos")
    monkeypatch.setattr("promix.data.folder.decode_files",
                        lambda *a, **k: pytest.fail("decoded before the model was checked"))
    code = cli.main(["train", "--data", str(root), f"--cache_dir={tmp_path / 'c'}",
                     f"--out_dir={tmp_path / 'runs'}", "--pretrained=false", *args])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert err.startswith("promix: error:")
    import re
    assert re.search(match, err), err
    assert not (tmp_path / "c").exists()


@pytest.mark.parametrize("model, size, reason", [
    ("timm:test_resnet", 160, "timm:test_resnet's pretrained config"),
    ("small_cnn", 48, "the images' common size"),
])
def test_the_training_size_is_printed_with_its_reason(tmp_path, capsys, model, size, reason):
    cfg = tiny_cfg(model)
    cfg.data.dataset, cfg.data.root = "folder", str(photo_folder(tmp_path / "photos"))
    cfg.data.cache_dir, cfg.data.noise = str(tmp_path / "c"), "none"
    data = build_data(cfg)
    out = capsys.readouterr().out
    assert data.train.images.shape[-1] == size
    assert f"training at {size}x{size}: {reason}" in out


@pytest.mark.parametrize("model, image_size, size, reason", [
    ("timm:test_resnet", None, 160, "timm:test_resnet's pretrained config"),
    ("timm:test_resnet", 48, 48, "data.image_size"),
    ("small_cnn", None, 20, "the arrays' own size"),
])
def test_image_arrays_are_sized_like_image_files(capsys, model, image_size, size, reason):
    """promix.train(images, labels) with a timm model fine-tunes at the model's size (a 20 px
    array would reach ResNet's last stage as a single pixel); the console says so."""
    cfg = tiny_cfg(model)
    cfg.data.dataset, cfg.data.noise, cfg.data.image_size = "arrays", "none", image_size
    images = torch.randint(0, 256, (12, 20, 20, 3), dtype=torch.uint8).numpy()
    data = build_array_data(cfg, images, (torch.arange(12) % 2).numpy(),
                            test=(images[:4], (torch.arange(4) % 2).numpy()))
    assert data.train.images.shape[1:] == data.test.images.shape[1:] == (3, size, size)
    assert f"training at {size}x{size}: {reason}" in capsys.readouterr().out


def test_the_api_sizes_arrays_before_building_them(monkeypatch):
    import promix
    from promix import api

    seen = []
    monkeypatch.setattr(api, "train_config", lambda cfg, data, **k: seen.append((cfg, data)))
    promix.train(torch.zeros(6, 20, 20, dtype=torch.uint8).numpy(), [0, 1] * 3,
                 model="timm:test_resnet", pretrained=False, epochs=1)
    cfg, data = seen[0]
    assert cfg.data.image_size == 160 and data.train.images.shape[-1] == 160


def test_photos_larger_than_64px_say_why_32(tmp_path, capsys):
    cfg = tiny_cfg("small_cnn")
    cfg.data.dataset, cfg.data.noise = "folder", "none"
    cfg.data.root = str(photo_folder(tmp_path / "photos", size=(128, 96)))
    cfg.data.cache_dir = str(tmp_path / "c")
    build_data(cfg)
    out = capsys.readouterr().out
    assert "training at 32x32: promix's default for images larger than 64 px" in out
    assert "most are 128 px" in out


def test_pretrained_timm_model_uses_its_normalization_and_filter(tmp_path, monkeypatch):
    cached = tmp_path / "resnet18.safetensors"  # stands for the Hugging Face cache's file
    save_file(timm_backbone("timm:resnet18").state_dict(), str(cached))
    monkeypatch.setattr(plan_mod, "pretrained_file", lambda name: str(cached))
    cfg = tiny_cfg("timm:resnet18", pretrained=True)
    cfg.data.dataset, cfg.data.noise = "folder", "none"
    cfg.data.root = str(photo_folder(tmp_path / "photos"))
    cfg.data.cache_dir, cfg.data.image_size = str(tmp_path / "c"), 32
    data = build_data(cfg)
    assert data.mean == (0.485, 0.456, 0.406) and data.std == (0.229, 0.224, 0.225)
    assert cfg.data.interpolation == "bicubic"
