"""A user's image folder with a known share of wrong labels, made from CIFAR-10.

`make_noisy_folder(out, images, labels, classes, kind=..., rate=..., seed=...)` writes
out/<given class>/<id>.png and returns, per file, its true class. Exactly round(rate * n) of
each class's images are put in a wrong folder:
- sym: a uniformly drawn other class;
- asym (class-dependent): a fixed partner class, the classes paired in the order given
  (0<->1, 2<->3, ...; with an odd count the last one goes to class 0).
So the folder holds exactly `rate` wrong labels overall, as a user's data would, and the
true label of every file is known for scoring.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

# Classes that resemble each other, paired for the class-dependent noise (the CIFAR-10 asym
# protocol's confusions: truck/automobile, bird/airplane, cat/dog, deer/horse).
CIFAR10_PAIRS = ("automobile", "truck", "airplane", "bird", "cat", "dog", "deer", "horse")


def partner(c: int, k: int) -> int:
    """The class that class c's wrong labels go to under asym noise, over k classes."""
    if c == k - 1 and k % 2:
        return 0
    return c + 1 if c % 2 == 0 else c - 1


def noisy_labels(labels: np.ndarray, k: int, *, kind: str, rate: float, seed: int) -> np.ndarray:
    """Given labels (N,) with exactly round(rate * n_c) of each class c wrong."""
    rng = np.random.default_rng(seed)
    given = labels.copy()
    for c in range(k):
        members = np.flatnonzero(labels == c)
        flip = rng.choice(members, size=int(round(rate * len(members))), replace=False)
        if kind == "sym":
            others = np.array([j for j in range(k) if j != c])
            given[flip] = others[rng.integers(0, k - 1, size=len(flip))]
        elif kind == "asym":
            given[flip] = partner(c, k)
        else:
            raise ValueError(f"noise kind {kind!r}: use sym or asym")
    return given


def make_noisy_folder(out: Path, images: np.ndarray, labels: np.ndarray, classes, *,
                      kind: str, rate: float, seed: int) -> dict[str, str]:
    """Write images (N, 3, H, W) uint8 into out/<given class>/<i>.png; {absolute path: true
    class name}."""
    given = noisy_labels(labels, len(classes), kind=kind, rate=rate, seed=seed)
    for name in classes:
        (out / name).mkdir(parents=True, exist_ok=True)
    truth = {}
    for i, (image, g) in enumerate(zip(images, given, strict=True)):
        path = (out / classes[g] / f"{i:05d}.png").resolve()
        Image.fromarray(image.transpose(1, 2, 0)).save(path)
        truth[str(path)] = classes[labels[i]]
    return truth


def cifar_subset(train, names, per_class: int) -> tuple[np.ndarray, np.ndarray]:
    """The first per_class training images of each named class: images (N, 3, 32, 32) uint8,
    labels (N,) indexing `names`."""
    images, labels = [], []
    all_labels = train.labels.numpy()
    for new, name in enumerate(names):
        idx = np.flatnonzero(all_labels == train.classes.index(name))[:per_class]
        images.append(train.images[idx].numpy())
        labels.append(np.full(len(idx), new))
    return np.concatenate(images), np.concatenate(labels)
