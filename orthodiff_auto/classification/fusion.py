"""Fusion of a fold's per-view classifiers into one prediction, with missing views masked out.

Every view keeps its own ``ViewClassifier`` (encoder + attention pooling + head), run only on the cases that
have that view. Two ways to combine them:

``gate``
    A learned logit ``g[f, v]`` per finding and view (``GATE_SCALE`` times a parameter). For a case, the
    weights of finding ``f`` are the softmax of ``g[f, :]`` over the views the case has (absent views get
    -inf, so the weights renormalise over the present ones and always sum to one); the fused logit is the
    weighted sum of the views' logits. With all views present the weights are ``softmax(g[f])``: they say
    which plane each decision leans on, and are saved with the model and reported in summary.json.

``stacked``
    The gate's form, fitted differently: the branches are the fold's single-view classifiers, unchanged, and
    the gate is fitted by ``classification.stacked`` on out-of-fold branch logits of the fold's training
    cases (the other folds' single-view validation predictions), not on logits of cases the branches were
    trained on. The weights are ``softmax(g[f, :])`` over the present views (no ``GATE_SCALE``: nothing is
    trained by the loop).

``mpae``
    Like ``stacked`` (the fold's single-view classifiers as unchanged branches, nothing trained), with a fusion
    head fitted on out-of-fold branch logits (``classification.mpae``, chosen and fitted by
    ``classification.mpae_fold``): a case-dependent gate, cross-finding stacking, and optionally a tabular
    branch on the case's encoded clinical columns (``forward(..., clinical=)``; without them, the encoding of
    a case whose clinical values are all missing).

``xattn``
    Cross-attention: each present view's bottleneck voxels become tokens (a linear map to ``XATTN_DIM``
    channels plus a learned embedding of the view); per finding a learned query attends over the tokens of all
    the case's present views at once (one softmax over them; an absent view's tokens are masked out, so its
    placeholder input never reaches the output), and a linear map per finding turns the attended vector into
    the fused logit. Trained end to end like ``concat``, with the branches' own BCE as an auxiliary term.

``concat``
    Per finding, the views' attention-pooled feature vectors are concatenated and a linear map per finding
    gives the fused logit. An absent view's vector is replaced by a learned "missing" embedding of that view
    (not by zeros: zero is an ordinary feature value, and a learned embedding lets the head learn what the
    absence of a view should contribute; the placeholder input never reaches the output). Initialised to the
    mean of the views' own heads, so the fused model starts as the average of the view classifiers.

The forward pass also returns every view's own logits, and the fused task adds their BCE (on present views
only). In gate mode the fused logit uses the branches' logits detached: the gate learns from the fused loss,
each branch only from its own loss, with equal weight for every view. Training the branches through the
gate instead lets a view weighted up early receive larger gradients, fit its training cases faster and win
the gate by that alone (measured: the gate saturated at 0/1 on arbitrary views). In concat mode the head and
branches train end to end, with the branch losses as an auxiliary term (``aux_weight``).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import nn

from orthodiff_auto.classification.model import ViewClassifier
from orthodiff_auto.classification.mpae import FusionHead, head_forward


FUSION_MODES = ("gate", "stacked", "mpae", "concat", "xattn")
#: width of the cross-attention tokens (xattn): the views' channel counts differ, so tokens are mapped to one width
XATTN_DIM = 32
HEAD_TENSORS = ("gate_weight", "gate_bias", "mix", "bias", "clinical_weight")

#: the gate's logits are ``GATE_SCALE * gate_logits``: the gate then learns about GATE_SCALE**2 times faster
#: under SGD (GATE_SCALE times under Adam) than the rest, as the loop has one learning rate for all parameters
#: and a handful of gate parameters otherwise barely moves while the branches learn.
GATE_SCALE = 10.0


class FusedClassifier(nn.Module):
    def __init__(self, views: Sequence[str], archs: Mapping, num_findings: int, mode: str = "gate",
                 gate_scale: float | None = None, num_clinical: int = 0):
        super().__init__()
        if mode not in FUSION_MODES:
            raise ValueError(f"fusion mode must be one of {list(FUSION_MODES)}, got {mode!r}")
        if not views:
            raise ValueError("fusion needs at least one view")
        self.views = list(views)
        self.mode = mode
        self.num_findings = int(num_findings)
        self.gate_scale = float(gate_scale if gate_scale is not None else GATE_SCALE if mode == "gate" else 1.0)
        self.branches = nn.ModuleDict({v: ViewClassifier(archs[v], num_findings) for v in self.views})
        if mode in ("gate", "stacked"):
            self.gate_logits = nn.Parameter(torch.zeros(num_findings, len(self.views)))
        elif mode == "xattn":
            self.token_maps = nn.ModuleDict({v: nn.Linear(self.branches[v].channels, XATTN_DIM) for v in self.views})
            self.view_embedding = nn.Parameter(torch.randn(len(self.views), XATTN_DIM) * 0.02)
            self.queries = nn.Parameter(torch.randn(num_findings, XATTN_DIM) / XATTN_DIM ** 0.5)
            self.xattn_weight = nn.Parameter(torch.randn(num_findings, XATTN_DIM) / XATTN_DIM ** 0.5)
            self.xattn_bias = nn.Parameter(torch.zeros(num_findings))
        elif mode == "mpae":  # fitted, never trained: buffers (saved in the state dict, no gradients)
            f, v, d = num_findings, len(self.views), int(num_clinical)
            for name, shape in (("gate_weight", (f, v, 3 * v)), ("gate_bias", (f, v)), ("mix", (f, f)),
                                ("bias", (f,)), ("clinical_weight", (f, d)), ("clinical_missing", (d,))):
                self.register_buffer(f"head_{name}", torch.zeros(shape, dtype=torch.float64))
            self.head_mix.copy_(torch.eye(f, dtype=torch.float64))
        else:
            self.missing = nn.ParameterDict(
                {v: nn.Parameter(torch.zeros(num_findings, self.branches[v].channels)) for v in self.views})
            total = sum(self.branches[v].channels for v in self.views)
            self.fusion_weight = nn.Parameter(torch.zeros(num_findings, total))
            self.fusion_bias = nn.Parameter(torch.zeros(num_findings))
            self.init_concat_head_from_branches()

    @torch.no_grad()
    def init_concat_head_from_branches(self) -> None:
        """Concat head = mean of the views' heads (call again after loading the branches' weights)."""
        if self.mode != "concat":
            return
        n = len(self.views)
        self.fusion_weight.copy_(torch.cat([self.branches[v].head.weight for v in self.views], dim=1) / n)
        self.fusion_bias.copy_(torch.stack([self.branches[v].head.bias for v in self.views]).mean(0))

    @torch.no_grad()
    def set_head(self, head: FusionHead, clinical_missing) -> None:
        """mpae: load a fitted head and the encoded inputs of a case without clinical values."""
        for name in HEAD_TENSORS:
            getattr(self, f"head_{name}").copy_(torch.as_tensor(getattr(head, name), dtype=torch.float64))
        self.head_clinical_missing.copy_(torch.as_tensor(clinical_missing, dtype=torch.float64))

    def gate_weights(self) -> torch.Tensor | None:
        """(F, V) weights with every view present (rows sum to one); None in concat and xattn mode; mpae: the
        weights of a case whose branch logits are all 0 (the gate's own preference, before it reads the logits)."""
        if self.mode in ("concat", "xattn"):
            return None
        if self.mode == "mpae":
            params = {k: getattr(self, f"head_{k}") for k in HEAD_TENSORS}
            x = torch.zeros(1, self.num_findings, len(self.views), dtype=torch.float64, device=self.head_mix.device)
            return head_forward(params, x, torch.ones(1, len(self.views), dtype=torch.bool, device=x.device),
                                None)[1][0].float()
        return torch.softmax(self.gate_scale * self.gate_logits.detach().float(), dim=-1)

    def forward(self, inputs: Mapping[str, torch.Tensor], present: torch.Tensor,
                clinical: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """``inputs[view]`` (B, 1, *size_v) (placeholders where absent), ``present`` (B, V) bool; ``clinical``
        (B, D) encoded clinical inputs (mpae with a tabular branch; None: every value missing).

        Returns ``logits`` (B, F), ``view_logits`` (B, F, V) (0 where absent) and, in gate mode, ``weights``
        (B, F, V) (0 where absent, summing to one over the present views); likewise in stacked mode.
        """
        present = present.bool()
        batch = present.shape[0]
        pooled_all, logits_all, tokens_all, token_mask = [], [], [], []
        for v, view in enumerate(self.views):
            branch = self.branches[view]
            x = inputs[view]
            idx = torch.nonzero(present[:, v], as_tuple=False).squeeze(1)
            pooled = torch.zeros(batch, self.num_findings, branch.channels, device=present.device)
            logits = torch.zeros(batch, self.num_findings, device=present.device)
            rows = x[:1] if idx.numel() == 0 else x.index_select(0, idx)
            fmap = branch.feature_map(rows)
            p, l = branch.head(fmap)
            if idx.numel() == 0:
                # no case of the batch has this view: a zero-valued use of the branch keeps every parameter in
                # the graph (DistributedDataParallel needs a gradient, here 0, for each) without affecting outputs
                anchor = 0.0 * (p.sum() + l.sum())
                pooled, logits = pooled + anchor, logits + anchor
            else:
                pooled = pooled.index_copy(0, idx, p)
                logits = logits.index_copy(0, idx, l)
            if self.mode == "xattn":
                tok = self.token_maps[view](fmap.flatten(2).transpose(1, 2).float()) + self.view_embedding[v]
                tokens = torch.zeros(batch, tok.shape[1], XATTN_DIM, device=present.device)
                tokens = tokens + 0.0 * tok.sum() if idx.numel() == 0 else tokens.index_copy(0, idx, tok)
                tokens_all.append(tokens)
                token_mask.append(present[:, v, None].expand(-1, tok.shape[1]))
            pooled_all.append(pooled)
            logits_all.append(logits)
        view_logits = torch.stack(logits_all, dim=-1)  # (B, F, V)
        out = {"view_logits": view_logits}
        if self.mode in ("gate", "stacked"):
            gate = (self.gate_scale * self.gate_logits.float())[None].expand(batch, -1, -1)
            gate = gate.masked_fill(~present[:, None, :], float("-inf"))
            weights = torch.nan_to_num(torch.softmax(gate, dim=-1), nan=0.0)  # a case without views: all 0
            out["weights"] = weights
            # the gate learns from the fused loss; the branches only from their own (see the fused task), so a
            # view weighted up early does not also get trained harder and win the gate by that alone
            out["logits"] = (weights * view_logits.detach()).sum(-1)
        elif self.mode == "xattn":
            tokens, mask = torch.cat(tokens_all, dim=1), torch.cat(token_mask, dim=1)  # (B, N, D), (B, N)
            scores = torch.einsum("fd,bnd->bfn", self.queries.float(), tokens) / XATTN_DIM ** 0.5
            scores = scores.masked_fill(~mask[:, None, :], float("-inf"))
            attn = torch.nan_to_num(torch.softmax(scores, dim=-1), nan=0.0)  # a case without views: all 0
            attended = torch.einsum("bfn,bnd->bfd", attn, tokens)
            out["logits"] = (attended * self.xattn_weight.float()).sum(-1) + self.xattn_bias.float()
        elif self.mode == "mpae":
            params = {k: getattr(self, f"head_{k}") for k in HEAD_TENSORS}
            d = self.head_clinical_weight.shape[1]
            q = None
            if d:
                q = self.head_clinical_missing[None].expand(batch, -1) if clinical is None else clinical.double()
            with torch.autocast(present.device.type, enabled=False):  # float64 head: never cast down
                logits, weights = head_forward(params, view_logits.double(), present, q)
            out["logits"], out["weights"] = logits.float(), weights.float()
        else:
            feats = []
            for v, view in enumerate(self.views):
                missing = self.missing[view].float()[None].expand(batch, -1, -1)
                feats.append(torch.where(present[:, v, None, None], pooled_all[v], missing))
            cat = torch.cat(feats, dim=-1)  # (B, F, sum C_v)
            out["logits"] = (cat * self.fusion_weight.float()).sum(-1) + self.fusion_bias.float()
        return out


def gate_weights_table(weights: torch.Tensor | None, findings: Sequence[str], views: Sequence[str]) -> dict | None:
    """{finding: {view: weight}} from an (F, V) tensor (None stays None)."""
    if weights is None:
        return None
    w = weights.detach().cpu().double().numpy()
    return {f: {v: float(w[i, j]) for j, v in enumerate(views)} for i, f in enumerate(findings)}


__all__ = ["FUSION_MODES", "FusedClassifier", "gate_weights_table"]
