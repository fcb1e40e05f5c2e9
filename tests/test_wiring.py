"""One ProMix step against a plain reference written from the method's step (SPEC §6).

The two peers are tiny linear nets whose primary-head logits are read off the weak image
itself (identity backbone), so the batch below is built to make every decision fire:
MHCS adds samples confident in their given label; LGA adds samples both peers predict
confidently and identically, but not those only one peer is sure of or on which the peers
disagree; the LGA cap binds for peer 2; and the sample LGA adds to peer 1 has an own
debiased argmax that differs from both its label and the agreed class (Q7). Priors are
distinct for every peer and set, and α ≠ β, so using the wrong one changes the numbers.

`reference_step` computes every named loss term, the final chosen masks, the prior updates
and (through one backward of L) the gradients with per-sample loops and plain tensor ops.
It shares no code with promix.step, debias, losses or selection. It draws the same random
numbers in the same order as the implementation and takes the FMix mask from
`mixing.fmix_mask` (its statistics: test_mixing.py); it writes the FMix loss as the method
states it, μ·CE(·, y_i) + (1-μ)·CE(·, y_ς'(i)), and mixup likewise as two hard CEs.
"""

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from promix.config import ProMixConfig
from promix.debias import PriorState
from promix.mixing import fmix_mask
from promix.models import TwoHeadNet
from promix.schedules import EpochSchedule
from promix.step import Batch, StepRandom, train_step

C = 3
# Weak images (1×2×2) = (a, b, c, d). Peer 1's logits are (a, b + d, c), peer 2's (a, b, c + d).
WEAK = [
    [8, 0, 0, 0],  # 0  y=0: both peers sure of the given label -> MHCS for both
    [0, 8, 0, 0],  # 1  y=1: likewise
    [4, 0, 0, 0],  # 2  y=1: both sure of class 0 (p = 0.965) -> LGA; peer 1's own debiased
    #                    argmax is class 2 (its clean prior all but excludes 1 and 2): Q7
    [0, 0, 9, 0],  # 3  y=0: both very sure of class 2 -> LGA, kept first under the cap
    [1, 0, 0, 0],  # 4  y=1: unsure; in peer 1's CSS set
    [0, 0.5, 0, 0],  # 5  y=2: unsure; in peer 2's CSS set
    [0, 3, 0, -2.5],  # 6  y=0: class 1 for both, but only peer 2 is sure (p = 0.949)
    [5, 0, 0, 10],  # 7  y=0: both sure, of different classes (1 and 2)
    [0, 0, 3, -2.5],  # 8  y=1: class 2 for both, but only peer 1 is sure
    [0.3, 0.2, -0.4, 0.1],  # 9  y=2: unsure, unchosen by peer 1
]
LABELS = [0, 1, 1, 0, 1, 2, 0, 0, 1, 2]
CSS = [[4], [5, 6, 7, 8, 9]]
B = len(LABELS)
PRIORS_CLEAN = [[0.995, 0.004, 0.001], [0.3, 0.5, 0.2]]
PRIORS_UNCLEAN = [[0.2, 0.3, 0.5], [0.6, 0.25, 0.15]]
MOMENTUM = 0.6
BASE = dict(tau=0.9, lga_threshold=0.8, debias_output=0.7, debias_pl=0.8, sharpen_t=0.5)
SCHED = dict(epoch=5, lr=0.0, warmup=False, rho=0.5, w=0.7, lambda_u=0.3, lga=True)


class Identity4(nn.Module):
    feature_dim = 4

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        return self.fc(x.flatten(1))


def peer(k: int) -> TwoHeadNet:
    net = TwoHeadNet(Identity4(), C)
    g = torch.Generator().manual_seed(10 + k)
    with torch.no_grad():
        net.backbone.fc.weight.copy_(torch.eye(4))
        net.backbone.fc.bias.zero_()
        w = torch.zeros(C, 4)
        w[:, :3] = torch.eye(3)
        w[1 + k, 3] = 1.0  # pixel d feeds class 1 of peer 1, class 2 of peer 2
        net.linear.weight.copy_(w)
        net.linear.bias.zero_()
        net.pseudo_linear.weight.copy_(torch.randn(C, 4, generator=g) * 0.5)
        net.pseudo_linear.bias.copy_(torch.randn(C, generator=g) * 0.5)
    return net


def scenario(css=CSS):
    weak = torch.tensor(WEAK, dtype=torch.float32).view(B, 1, 2, 2)
    strong = 0.5 * weak + torch.randn(weak.shape, generator=torch.Generator().manual_seed(1))
    batch = Batch(weak, strong, torch.tensor(LABELS), torch.arange(B))
    clean = [torch.isin(torch.arange(B), torch.tensor(c, dtype=torch.long)) for c in css]
    return [peer(0), peer(1)], batch, clean


def priors() -> PriorState:
    return PriorState(torch.tensor(PRIORS_CLEAN), torch.tensor(PRIORS_UNCLEAN), MOMENTUM)


# ----------------------------------------------------------------------------- the reference


def hard_ce(logits_row, adjustment, cls):
    """-log softmax(z + adjustment)[cls] for one sample."""
    z = logits_row + adjustment
    return -(z[cls] - torch.logsumexp(z, 0))


def soft_ce_row(logits_row, adjustment, target):
    z = logits_row + adjustment
    return -(target * (z - torch.logsumexp(z, 0))).sum()


def mean(values):
    return torch.stack(values).mean() if values else torch.zeros(())


def reference_decisions(p, z_weak, y, clean, pic, cfg, sched):
    """MHCS, targets t_k and LGA (SPEC §6.3-6.5), sample by sample. Lists of bools / ints."""
    chosen, targets = [], []
    for k in range(2):
        q_clean = torch.softmax(z_weak[k] - cfg.debias_pl * torch.log(pic[k]), 1)
        m = [bool(clean[k][i]) or (cfg.mhcs and float(p[k][i, y[i]]) > cfg.tau) for i in range(B)]
        chosen.append(m)
        targets.append([y[i] if m[i] else int(q_clean[i].argmax()) for i in range(B)])
    if sched.lga:
        conf_1, pred_1 = p[0].max(1)
        conf_2, pred_2 = p[1].max(1)
        theta = cfg.lga_threshold
        for k in range(2):
            n = sum(chosen[k])
            if n / B >= theta:
                continue
            candidates = [i for i in range(B) if not chosen[k][i] and conf_1[i] > cfg.tau
                          and conf_2[i] > cfg.tau and pred_1[i] == pred_2[i]]
            candidates.sort(key=lambda i: -float(conf_1[i] + conf_2[i]) / 2)
            for i in candidates[: math.floor(theta * B) - n]:
                chosen[k][i] = True
                if cfg.lga_label == "agreed":
                    targets[k][i] = int(pred_1[i])
    return chosen, targets


def reference_mix(net, x, t, heads, adj, kind, cfg, rng, gen):
    """One mixup or FMix pass on the chosen samples; its CE per head, as the method writes it:
    weight λ (μ) on each sample's own label and 1-λ (1-μ) on its partner's."""
    n = len(x)
    if kind == "mix":
        lam0 = rng.beta(cfg.mixup_alpha, cfg.mixup_alpha)
        lam = max(lam0, 1 - lam0)
        perm = torch.randperm(n, generator=gen)
        mixed = torch.stack([lam * x[j] + (1 - lam) * x[perm[j]] for j in range(n)])
    else:
        lam = rng.beta(1.0, 1.0)
        mask = fmix_mask(lam, x.shape[-2:], decay=cfg.fmix_decay, rng=rng, generator=gen)
        perm = torch.randperm(n, generator=gen)
        mixed = torch.stack([mask * x[j] + (1 - mask) * x[perm[j]] for j in range(n)])
    out = net(mixed)
    terms = {}
    for head in heads:
        logits = out.logits if head == "h" else out.pseudo_logits
        own = mean([hard_ce(logits[j], adj, t[j]) for j in range(n)])
        other = mean([hard_ce(logits[j], adj, t[int(perm[j])]) for j in range(n)])
        terms[kind if head == "h" else f"{kind}_ap"] = lam * own + (1 - lam) * other
    return terms


def reference_step(nets, batch, clean, pic, piu, cfg, sched, rng, gen):
    """Terms (floats), chosen masks, new priors; leaves the gradients of L in the nets."""
    y = batch.label.tolist()
    weak = [net(batch.weak) for net in nets]
    z_weak = [o.logits.detach() for o in weak]
    p = [torch.softmax(z, 1) for z in z_weak]
    chosen, targets = reference_decisions(p, z_weak, y, clean, pic, cfg, sched)
    w, lam_u, alpha = sched.w, sched.lambda_u, cfg.debias_output
    out, total = {}, torch.zeros(())
    for k, net in enumerate(nets):
        L = [i for i in range(B) if chosen[k][i]]
        U = [i for i in range(B) if not chosen[k][i]]
        t = targets[k]
        adj_c, adj_u = alpha * torch.log(pic[k]), alpha * torch.log(piu[k])
        strong = net(batch.strong)
        terms = {name: torch.zeros(()) for name in ("ce", "cr", "mix", "fmix")}
        heads = ["h", "ap"] if cfg.pseudo_head else ["h"]
        for head in heads:
            suffix = "" if head == "h" else "_ap"
            pick = (lambda o: o.logits) if head == "h" else (lambda o: o.pseudo_logits)
            terms["ce" + suffix] = mean([hard_ce(pick(weak[k])[i], adj_c, t[i]) for i in L])
            terms["cr" + suffix] = mean([hard_ce(pick(strong)[i], adj_c, t[i]) for i in L])
            if not cfg.consistency:
                terms["cr" + suffix] = torch.zeros(())
            terms.setdefault("mix" + suffix, torch.zeros(()))
            terms.setdefault("fmix" + suffix, torch.zeros(()))
        if len(L) >= 2:
            x, tl = batch.weak[L], [t[i] for i in L]
            groups = [heads] if cfg.passes == "efficient" else [[h] for h in heads]
            for group in groups:
                for kind, on in (("mix", cfg.mixup), ("fmix", cfg.fmix)):
                    if on:
                        terms |= reference_mix(net, x, tl, group, adj_c, kind, cfg, rng, gen)
        loss_h = terms["ce"] + w * (terms["cr"] + terms["mix"] + terms["fmix"])
        loss_ap = torch.zeros(())
        if cfg.pseudo_head:
            q_u = torch.softmax(z_weak[k] - cfg.debias_pl * torch.log(piu[k]), 1)
            r = q_u ** (1 / cfg.sharpen_t)
            r = r / r.sum(1, keepdim=True)
            unl_w = mean([soft_ce_row(weak[k].pseudo_logits[i], adj_u, r[i]) for i in U])
            unl_s = mean([soft_ce_row(strong.pseudo_logits[i], adj_u, r[i]) for i in U])
            terms["unl"] = unl_w + w * unl_s
            loss_ap = lam_u * terms["unl"] + terms["ce_ap"] + w * (
                terms["cr_ap"] + terms["mix_ap"] + terms["fmix_ap"])
        terms |= {"loss_h": loss_h, "loss_ap": loss_ap}
        total = total + loss_h + loss_ap
        out |= {f"{name}_{k + 1}": float(v.detach()) for name, v in terms.items()}
    total.backward()
    new_c, new_u = pic.clone(), piu.clone()
    for k in range(2):
        for prior, members in ((new_c, chosen[k]), (new_u, [not c for c in chosen[k]])):
            rows = [p[k][i] for i in range(B) if members[i]]
            if rows:
                prior[k] = MOMENTUM * prior[k] + (1 - MOMENTUM) * torch.stack(rows).mean(0)
    return out | {"loss": float(total.detach())}, chosen, targets, (new_c, new_u)


# ----------------------------------------------------------------------------- the comparison


def run_both(cfg_kw=None, sched_kw=None, css=CSS):
    cfg = ProMixConfig(**(BASE | (cfg_kw or {})))
    sched = EpochSchedule(**(SCHED | (sched_kw or {})))
    nets, batch, clean = scenario(css)
    ref_nets = copy.deepcopy(nets)
    state = priors()
    opt = torch.optim.SGD([{"params": n.parameters()} for n in nets], lr=0.0)  # keeps weights
    terms, chosen = train_step(
        nets, opt, batch, clean=clean, priors=state, sched=sched, cfg=cfg,
        random=StepRandom(np.random.default_rng(7), torch.Generator().manual_seed(7)))
    ref = reference_step(ref_nets, batch, clean, torch.tensor(PRIORS_CLEAN),
                         torch.tensor(PRIORS_UNCLEAN), cfg, sched, np.random.default_rng(7),
                         torch.Generator().manual_seed(7))
    return (terms, chosen, state, nets), ref, ref_nets


CASES = {  # pytest ids: ASCII words (mutmut passes them back on the command line)
    "faithful": ({}, {}),
    "efficient-passes": ({"passes": "efficient"}, {}),
    "agreed-lga-label": ({"lga_label": "agreed"}, {}),
    "outside-the-lga-window": ({}, {"lga": False}),
    "without-mhcs": ({"mhcs": False}, {}),
    "without-pseudo-head": ({"pseudo_head": False}, {}),
    "without-cr-and-mixup": ({"consistency": False, "mixup": False}, {}),
    "without-fmix-no-unl-weight": ({"fmix": False}, {"lambda_u": 0.0, "w": 1.0}),
}


@pytest.mark.parametrize("cfg_kw, sched_kw", CASES.values(), ids=CASES.keys())
def test_step_equals_the_reference(cfg_kw, sched_kw):
    (terms, chosen, state, nets), (ref_terms, ref_chosen, _, ref_priors), ref_nets = run_both(
        cfg_kw, sched_kw)
    assert [m.tolist() for m in chosen] == ref_chosen
    assert set(terms) == set(ref_terms)
    for name, value in ref_terms.items():
        assert terms[name] == pytest.approx(value, rel=1e-5, abs=1e-6), name
    torch.testing.assert_close(state.clean, ref_priors[0])
    torch.testing.assert_close(state.unclean, ref_priors[1])
    for k in range(2):
        for (name, a), b in zip(nets[k].named_parameters(), ref_nets[k].parameters(),
                                strict=True):
            grad = torch.zeros_like(a) if a.grad is None else a.grad
            ref = torch.zeros_like(b) if b.grad is None else b.grad
            torch.testing.assert_close(grad, ref, rtol=1e-4, atol=1e-6, msg=f"peer {k}: {name}")


def members(mask):
    return [i for i, m in enumerate(mask) if m]


@pytest.mark.parametrize("cfg_kw, sched_kw, expected", [
    # peer 1: MHCS adds 0, 1 to its CSS {4}; LGA adds 2, 3 (both sure and agreeing), not 6 or
    # 8 (one peer unsure) nor 7 (they disagree). Peer 2: the cap ⌊0.8·10⌋ - 7 = 1 keeps 3,
    # the more confident of 2 and 3.
    ({}, {}, [[0, 1, 2, 3, 4], [0, 1, 3, 5, 6, 7, 8, 9]]),
    ({}, {"lga": False}, [[0, 1, 4], [0, 1, 5, 6, 7, 8, 9]]),
    ({"mhcs": False}, {"lga": False}, [[4], [5, 6, 7, 8, 9]]),
    # without MHCS, 0 and 1 are unchosen but both peers are sure of them: LGA takes them;
    # peer 2's cap 8 - 5 = 3 keeps 3, 0 and 1 (mean confidence 0.9998, 0.9993, 0.9993), not 2
    ({"mhcs": False}, {}, [[0, 1, 2, 3, 4], [0, 1, 3, 5, 6, 7, 8, 9]]),
])
def test_the_scenario_reaches_tau(cfg_kw, sched_kw, expected):
    """Hand-derived chosen sets: MHCS and LGA really fire here, and each peer keeps its own."""
    (_, chosen, _, _), (_, ref_chosen, _, _), _ = run_both(cfg_kw, sched_kw)
    assert [members(m) for m in chosen] == expected
    assert [members(m) for m in ref_chosen] == expected


def test_lga_targets_come_from_the_peers_own_debiased_argmax_q7():
    """Sample 2 (label 1): both peers agree on class 0, but peer 1's clean prior puts its
    debiased argmax at class 2. faithful trains it on 2, agreed on 0; peer 2 has no room."""
    _, (_, _, targets, _), _ = run_both()
    assert targets[0][2] == 2 and targets[0][3] == 2
    _, (_, _, agreed, _), _ = run_both({"lga_label": "agreed"})
    assert agreed[0][2] == 0


def test_empty_unchosen_set_keeps_the_unclean_prior():
    everyone = [list(range(B))] * 2
    (terms, chosen, state, _), (ref_terms, _, _, _), _ = run_both(css=everyone)
    assert all(m.all() for m in chosen) and terms["unl_1"] == 0 == ref_terms["unl_1"]
    assert torch.equal(state.unclean, torch.tensor(PRIORS_UNCLEAN))
    assert not torch.allclose(state.clean, torch.tensor(PRIORS_CLEAN))
