"""Images larger than memory: the memory-mapped cache gives the same pixels, the same training
and a resident set that does not keep what it read."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from promix.config import Config
from promix.data import folder as folder_mod
from promix.data.base import Dataset, ImageSet
from promix.data.folder import load_folder
from promix.data.mapped import MappedImages, prefetch
from promix.trainer import Trainer

pytestmark = pytest.mark.usefixtures("one_thread")


def mapped_array(tmp_path: Path, images: np.ndarray) -> np.ndarray:
    np.save(tmp_path / "x.npy", images)
    return np.load(tmp_path / "x.npy", mmap_mode="r")


def test_gather_matches_the_array(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (30, 3, 5, 5), dtype=np.uint8)
    m = MappedImages(mapped_array(tmp_path, x))
    t = torch.from_numpy(x)
    index = torch.tensor([7, 2, 2, 29, 0])
    assert torch.equal(m[index], t[index])  # unsorted, repeated
    assert torch.equal(m[3:11], t[3:11]) and torch.equal(m[4], t[4])
    mask = torch.zeros(30, dtype=torch.bool)
    mask[[1, 5]] = True
    assert torch.equal(m[mask], t[mask])
    sub = m.subset(torch.tensor([9, 4, 1]))
    assert isinstance(sub, MappedImages) and sub.shape == (3, 3, 5, 5)
    assert torch.equal(sub[[2, 0]], t[[1, 9]])


def test_prefetch_keeps_the_order_and_raises_the_reader_error(tmp_path):
    x = np.arange(40 * 3, dtype=np.uint8).reshape(40, 3, 1, 1)
    m = MappedImages(mapped_array(tmp_path, x))
    batches = [torch.tensor([i, 39 - i]) for i in range(10)]
    got = list(prefetch(m, batches))
    assert [i for i, _ in got] == batches
    assert all(torch.equal(b, torch.from_numpy(x)[i]) for i, b in got)
    with pytest.raises(IndexError):
        list(prefetch(m, [torch.tensor([0]), torch.tensor([99])]))


def rss_file() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssFile:"):
            return int(line.split()[1]) * 1024
    pytest.skip("no RssFile in /proc/self/status")


def test_reading_batches_keeps_the_file_out_of_the_resident_set(tmp_path):
    x = np.ones((64, 3, 256, 256), dtype=np.uint8)  # 12.6 MB on disk
    arr = mapped_array(tmp_path, x)
    images = MappedImages(arr)
    int(images[torch.arange(8)].sum())  # pages in the code this needs (also file pages)
    int(np.ones((8, 3), np.uint8)[torch.arange(8).numpy()].sum())
    base = rss_file()
    for i in range(0, 64, 8):
        assert int(images[torch.arange(i, i + 8)].sum()) == 8 * 3 * 256 * 256
    assert rss_file() - base < 1e6  # preadv: the pages stay in the page cache
    through_mapping = sum(int(arr[i : i + 8].sum()) for i in range(0, 64, 8))
    assert through_mapping == x.size and rss_file() - base > 10e6  # the test can see it
    images.release()
    assert rss_file() - base < 1e6


def test_training_from_the_mapped_cache_equals_training_in_memory(tmp_path):
    rng = np.random.default_rng(1)
    labels = torch.arange(48) % 3
    x = (rng.integers(0, 120, (48, 3, 16, 16)) + 60 * labels.numpy()[:, None, None, None])
    x = x.astype(np.uint8)
    classes = ("a", "b", "c")

    def run(images):
        cfg = Config()
        cfg.model.width, cfg.optim.batch_size = 8, 16
        cfg.schedule.epochs, cfg.schedule.warmup_epochs = 2, 1
        cfg.promix.tau, cfg.run.progress = 0.5, False
        data = Dataset("t", ImageSet(images, labels, classes), mean=(0.5,) * 3, std=(0.25,) * 3)
        trainer = Trainer(cfg, data)
        trainer.fit()
        return [torch.cat([p.flatten() for p in n.parameters()])
                for n in trainer.state.nets]

    in_memory = run(torch.from_numpy(x))
    on_disk = run(MappedImages(mapped_array(tmp_path, x)))
    assert all(torch.equal(a, b) for a, b in zip(in_memory, on_disk, strict=True))


def test_large_folders_stay_on_disk_and_decode_reports_skips(tmp_path, monkeypatch, capsys):
    root = tmp_path / "data"
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(5):
            Image.new("RGB", (20, 20), (30 * i, 100, 7)).save(root / c / f"{i}.png")
    bad = root / "b" / "broken.png"
    bad.write_bytes(b"not a png")
    in_memory = load_folder(root, cache_dir=tmp_path / "c1", skip_bad=True)
    monkeypatch.setattr(folder_mod, "IN_MEMORY_BYTES", 0)
    on_disk = load_folder(root, cache_dir=tmp_path / "c2", skip_bad=True)
    assert isinstance(on_disk.train.images, MappedImages)
    assert torch.equal(on_disk.train.images[:], in_memory.train.images)
    assert f"promix: skipped {bad}: " in capsys.readouterr().out


def test_decoding_shows_a_progress_bar_in_images(tmp_path, monkeypatch, capsys):
    from promix.data import cache as cache_mod

    root = tmp_path / "data"
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (20, 20), (30 * i, 100, 7)).save(root / c / f"{i}.png")
    monkeypatch.setattr(cache_mod, "PROGRESS_MIN", 1)
    load_folder(root, cache_dir=tmp_path / "c")
    err = capsys.readouterr().err
    assert "decoding" in err and "6/6" in err and "img/s" in err
