"""The trainer's wiring around the step, on hand-built outputs: one SGD over both peers as
two parameter groups (SPEC §6.6), drop_last only in ProMix epochs (§4, §12.11), and Acc Mean
as the argmax of the peers' mean logits (§9)."""

import torch

import promix.trainer
from promix.config import Config
from promix.data.base import Dataset, ImageSet
from promix.inference import PeerOutputs
from promix.trainer import Trainer


def trainer(n=9, batch_size=4):
    cfg = Config()
    cfg.model.width, cfg.run.progress, cfg.run.device = 4, False, "cpu"
    cfg.optim.batch_size = batch_size
    labels = torch.arange(n) % 3
    images = torch.zeros(n, 1, 8, 8, dtype=torch.uint8)
    test = ImageSet(images[:4], torch.tensor([0, 1, 2, 1]), ("a", "b", "c"))
    return Trainer(cfg, Dataset("hand", ImageSet(images, labels, ("a", "b", "c")), test=test))


def test_one_sgd_over_both_peers_as_two_groups():
    t = trainer()
    groups = t.state.optimizer.param_groups
    assert len(groups) == 2
    for group, net in zip(groups, t.state.nets, strict=True):
        assert [id(p) for p in group["params"]] == [id(p) for p in net.parameters()]
        assert (group["momentum"], group["weight_decay"], group["nesterov"]) == (0.9, 5e-4, False)


def test_promix_epochs_drop_the_last_partial_batch_and_the_warmup_keeps_it():
    t = trainer(n=9, batch_size=4)
    kept = [len(b) for b in t.batches(drop_last=False)]
    dropped = [b.tolist() for b in t.batches(drop_last=True)]
    assert kept == [4, 5]  # a lone 9th sample joins the batch before (BN needs two)
    assert [len(b) for b in dropped] == [4, 4]
    assert len(set(sum(dropped, []))) == 8  # a permutation: no sample twice


def test_acc_mean_is_the_argmax_of_the_mean_logits(monkeypatch):
    # Test labels 0, 1, 2, 1. Peer 1 is right on samples 0 and 1, peer 2 on 0 and 2; the mean
    # of the logits is right on 0, 2 and 3 (on 3 both peers alone are wrong), so Acc Mean
    # (3/4) differs from each peer's accuracy (2/4).
    logits = [torch.tensor([[5.0, 0, 0], [0, 1, 0], [0, 0, -1], [3, 2.5, 0]]),
              torch.tensor([[5.0, 0, 0], [1, 0, 3], [0, 0, 2], [0, 2.5, 3]])]
    outs = iter([PeerOutputs(z, -z) for z in logits])
    monkeypatch.setattr(promix.trainer, "predict", lambda *a, **k: next(outs))
    record = trainer().evaluate()
    assert record["test/acc"] == 0.75
    assert record["test/acc_net1"] == 0.5 and record["test/acc_net2"] == 0.5
    assert record["test/acc_pseudo1"] == 0.25  # -z: right only on sample 2
