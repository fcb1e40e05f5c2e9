"""Look at the augmentations: a PNG grid of original images with weak and strong views, and
the time per batch of 256 images for each view.

    python benchmarks/augment_grid.py [--out benchmarks/results/augment_grid.png] [--n 6]

Rows are images (the embedded MNIST sample, then the first CIFAR-10 training images if the
archive is at --cifar); columns are the original, two weak views and four strong views.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from promix.data.augment import strong_view, weak_view  # noqa: E402
from promix.data.cifar import load_cifar  # noqa: E402
from promix.data.embedded import load_mnist5k  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from paths import CIFAR10_ARCHIVE, ROOT  # noqa: E402

WEAK, STRONG = 2, 4  # views per image in the grid


def load_cifar_batch(path: Path, n: int) -> torch.Tensor | None:
    """The first n CIFAR-10 training images, (n, 3, 32, 32) uint8, or None without the archive
    (read with promix's restricted unpickler, like any user's archive)."""
    if not path.exists():
        return None
    return load_cifar("cifar10", path).train.images[:n]


def views(x: torch.Tensor, seed: int) -> list[torch.Tensor]:
    """[original, weak views..., strong views...], each (N, C, H, W) uint8."""
    g = torch.Generator().manual_seed(seed)
    weak = [weak_view(x, generator=g) for _ in range(WEAK)]
    return [x, *weak, *(strong_view(x, generator=g) for _ in range(STRONG))]


def plot_grid(sets: list[tuple[str, torch.Tensor]], out: Path, seed: int) -> None:
    rows = []  # (dataset, index, (columns, C, H, W)): original, weak views, strong views
    for name, x in sets:
        cols = torch.stack(views(x, seed), dim=1)
        rows += [(name, i, cols[i]) for i in range(len(x))]
    titles = ["original"] + [f"weak {k + 1}" for k in range(WEAK)]
    titles += [f"strong {k + 1}" for k in range(STRONG)]
    fig, axes = plt.subplots(len(rows), len(titles), figsize=(1.3 * len(titles), 1.3 * len(rows)))
    for r, (name, i, cols) in enumerate(rows):
        for c, img in enumerate(cols):
            ax = axes[r, c]
            if img.shape[0] == 1:
                ax.imshow(img[0].numpy(), cmap="gray", vmin=0, vmax=255)
            else:
                ax.imshow(img.permute(1, 2, 0).numpy())
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(titles[c], fontsize=8)
            if c == 0:
                ax.set_ylabel(f"{name} {i}", fontsize=7)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def time_views(x: torch.Tensor, repeats: int) -> dict[str, tuple[float, float]]:
    """(median, fastest) milliseconds per call for a batch x. On a shared machine the fastest
    call is the better estimate of the cost itself; the median includes other people's load."""
    g = torch.Generator(device=x.device).manual_seed(0)
    result = {}
    for fn in (weak_view, strong_view):
        for _ in range(3):  # warm-up
            fn(x, generator=g)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn(x, generator=g)
            times.append(time.perf_counter() - start)
        result[fn.__name__] = (1000 * sorted(times)[len(times) // 2], 1000 * min(times))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/augment_grid.png")
    parser.add_argument("--n", type=int, default=6, help="images per dataset in the grid")
    parser.add_argument("--cifar", type=Path, default=CIFAR10_ARCHIVE,
                        help="cifar-10-python.tar.gz")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=20, help="timed calls per view")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    train, _ = load_mnist5k()
    mnist = train.images[torch.randperm(len(train), generator=torch.Generator().manual_seed(0))]
    cifar = load_cifar_batch(args.cifar, 256)
    sets = [("MNIST", mnist[: args.n])]
    if cifar is not None:
        sets.append(("CIFAR-10", cifar[: args.n]))
    plot_grid(sets, args.out, args.seed)
    print(f"wrote {args.out}")

    batch = cifar if cifar is not None else torch.randint(0, 256, (256, 3, 32, 32)).byte()
    print(f"CPU: {platform.machine()}, {torch.get_num_threads()} torch threads")
    for label, x in (("3x32x32", batch), ("1x28x28", mnist[:256])):
        for name, (median, fastest) in time_views(x, args.repeats).items():
            print(f"{name:12s} {label}: {median:6.1f} ms median, {fastest:6.1f} ms fastest"
                  " per batch of 256")


if __name__ == "__main__":
    main()
