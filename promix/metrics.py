"""Scores written once and used everywhere: precision/recall/F1 of a selected set, and the
accuracy of the peers' ensemble. Plain arithmetic: works on NumPy arrays and tensors alike."""

from __future__ import annotations


def precision_recall_f1(hits: float, selected: float, relevant: float) -> dict[str, float]:
    """hits = |selected ∩ relevant|; selected = |selected|; relevant = |relevant|.

    precision = hits / |selected|, recall = hits / |relevant| (0 for an empty set),
    F1 their harmonic mean.
    """
    precision = hits / max(selected, 1.0)
    recall = hits / max(relevant, 1.0)
    return {"precision": precision, "recall": recall,
            "f1": 2 * precision * recall / max(precision + recall, 1e-12)}


def ensemble_accuracy(outputs: list, labels, *, pseudo: bool = False) -> dict[str, float]:
    """Accuracy of the peers' mean logits ("acc", the paper's Acc Mean), of each peer's
    primary head ("acc_net1", ...) and, with pseudo, of each pseudo head ("acc_pseudo1").
    outputs: one `inference.PeerOutputs` per peer, logits (N, C); labels (N,)."""
    from .inference import accuracy

    mean_logits = sum(o.logits for o in outputs) / len(outputs)
    record = {"acc": accuracy(mean_logits, labels)}
    for k, o in enumerate(outputs, start=1):
        record[f"acc_net{k}"] = accuracy(o.logits, labels)
        if pseudo:
            record[f"acc_pseudo{k}"] = accuracy(o.pseudo_logits, labels)
    return record
