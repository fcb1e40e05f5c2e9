"""Test callbacks for training, and a `promix` entry point that installs them.

    python tests/hooks.py [--pause-after=N --marker=FILE] [--debug-dir=DIR] train ARGS...

runs `promix train ARGS...` (also under `torch.distributed.run`) with:
- Pause: after the N-th training step of this process, touch FILE and sleep, so a test can
  SIGKILL training in the middle of an epoch;
- Dump: after every epoch, each rank writes rank{r}-epoch{e}.json to DIR: the digest of its
  weights and priors, and its selection masks (tests compare ranks, and process counts).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path


class Pause:
    def __init__(self, after: int, marker: Path):
        self.after, self.marker, self.steps = after, marker, 0

    def on_batch_end(self, trainer) -> None:
        self.steps += 1
        if self.steps == self.after:
            self.marker.write_text(str(os.getpid()))
            while True:
                time.sleep(1)


def weights_digest(state) -> str:
    """SHA-256 of the peers' weights, BN buffers and the class priors."""
    h = hashlib.sha256()
    for name, t in sorted(state.model_tensors().items()):
        h.update(name.encode())
        h.update(t.detach().contiguous().cpu().numpy().tobytes())
    return h.hexdigest()


def bits(mask) -> str:
    return "".join("1" if b else "0" for b in mask.tolist())


class Dump:
    def __init__(self, folder: Path):
        self.folder = folder

    def on_epoch_end(self, trainer, record: dict) -> None:
        state, world = trainer.state, trainer.world
        dump = {"epoch": record["epoch"], "rank": world.rank, "size": world.size,
                "weights": weights_digest(state),
                "clean": [bits(peer.clean) for peer in state.selection],
                "chosen": [bits(peer.chosen) for peer in state.selection]}
        path = self.folder / f"rank{world.rank}-epoch{record['epoch']:04d}.json"
        path.write_text(json.dumps(dump))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pause-after", type=int)
    parser.add_argument("--marker", type=Path)
    parser.add_argument("--debug-dir", type=Path)
    ours, rest = parser.parse_known_args(argv)
    callbacks = []
    if ours.pause_after:
        callbacks.append(Pause(ours.pause_after, ours.marker))
    if ours.debug_dir:
        callbacks.append(Dump(ours.debug_dir))
    from promix.cli import main as promix_main

    return promix_main(rest, callbacks=callbacks)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
