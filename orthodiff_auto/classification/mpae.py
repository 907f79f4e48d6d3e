"""MPAE fusion: a per-finding gating network whose view weights depend on the case, a cross-finding stacking
layer, and an optional tabular (clinical) branch, fitted on out-of-fold view logits.

For a case with view logits ``x[f, v]`` (finding ``f``, view ``v``) and presence ``m[v]``:

- gate: per finding, a score per view ``s[f, v] = b[f, v] + W[f, v] . (x[f] * m, |x[f]| * m, m)`` — it reads
  the case's own logits of that finding in every present view, their confidence and which views exist —
  then a softmax over the present views (absent views get -inf; their placeholder logits are zeroed before
  anything reads them, so they cannot change a present view's weight);
- ``u[f] = sum_v w[f, v] x[f, v]``: the gated logit, a convex combination of the present views' logits;
- cross-finding stacking: ``z = A u + c`` with ``A`` (F x F) starting at the identity: a finding's logit may
  borrow from the others' (co-occurring findings, e.g. an ACL tear with an effusion);
- tabular branch (with clinical inputs ``q``, ``classification.clinical_inputs``): ``z += B q``, late fusion
  of a logistic model of the clinical columns.

``case_gate=False`` drops ``W`` (one weight per finding and view: the stacked gate's form); ``cross_finding=
False`` fixes ``A`` to the identity and ``c`` to 0. Fitted like the stacked gate: full batch, L-BFGS, float64,
BCE with per-finding positive weights plus ``l2 / n`` times the squared distance of ``W``, ``A`` and ``B``
from their starting values (0, identity, 0) and of the centred gate biases from 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class FusionHead:
    """A fitted head: how the gate is computed, the stacking layer and the clinical branch (float64 arrays)."""

    gate_weight: np.ndarray  # (F, V, 3V); zeros when the gate does not depend on the case
    gate_bias: np.ndarray  # (F, V)
    mix: np.ndarray  # (F, F)
    bias: np.ndarray  # (F,)
    clinical_weight: np.ndarray  # (F, D); D = 0 without clinical inputs
    loss: float = float("nan")
    iterations: int = 0

    @property
    def num_clinical(self) -> int:
        return int(self.clinical_weight.shape[1])

    def predict(self, view_logits: np.ndarray, present: np.ndarray, clinical: np.ndarray | None = None) -> np.ndarray:
        """(N, F) fused logits."""
        with torch.no_grad():
            z, _ = head_forward(_params(self), torch.as_tensor(view_logits, dtype=torch.float64),
                                torch.as_tensor(present, dtype=torch.bool), _clinical_tensor(clinical, self, len(view_logits)))
        return z.numpy()

    def weights(self, view_logits: np.ndarray, present: np.ndarray) -> np.ndarray:
        """(N, F, V) the gate's weights for each case (0 for absent views)."""
        with torch.no_grad():
            _, w = head_forward(_params(self), torch.as_tensor(view_logits, dtype=torch.float64),
                                torch.as_tensor(present, dtype=torch.bool), None)
        return w.numpy()

    def to_dict(self) -> dict[str, Any]:
        return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in self.__dict__.items()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "FusionHead":
        arrays = {k: np.asarray(d[k], dtype=np.float64) for k in ("gate_weight", "gate_bias", "mix", "bias",
                                                                   "clinical_weight")}
        f, v = arrays["gate_bias"].shape
        arrays["gate_weight"] = arrays["gate_weight"].reshape(f, v, 3 * v)
        arrays["clinical_weight"] = arrays["clinical_weight"].reshape(f, -1)
        return cls(**arrays, loss=float(d.get("loss", float("nan"))), iterations=int(d.get("iterations", 0)))


def _params(head: FusionHead) -> dict[str, torch.Tensor]:
    return {k: torch.as_tensor(getattr(head, k), dtype=torch.float64)
            for k in ("gate_weight", "gate_bias", "mix", "bias", "clinical_weight")}


def _clinical_tensor(clinical, head: FusionHead, n: int) -> torch.Tensor | None:
    if head.num_clinical == 0:
        return None
    if clinical is None:
        raise ValueError(f"this head has a clinical branch of {head.num_clinical} inputs; pass them (encoded "
                         "missing values for a case without clinical data)")
    q = torch.as_tensor(np.asarray(clinical), dtype=torch.float64)
    if q.shape != (n, head.num_clinical):
        raise ValueError(f"clinical inputs {tuple(q.shape)}, expected ({n}, {head.num_clinical})")
    return q


def head_forward(p: Mapping[str, torch.Tensor], x: torch.Tensor, present: torch.Tensor,
                 clinical: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, F) fused logits and (N, F, V) gate weights of (N, F, V) view logits and (N, V) presence."""
    n, f, v = x.shape
    mask = present[:, None, :].expand(n, f, v)
    xm = torch.where(mask, x, torch.zeros((), dtype=x.dtype))  # an absent view's placeholder never reaches anything
    feats = torch.cat([xm, xm.abs(), mask.to(x.dtype)], dim=-1)  # (N, F, 3V)
    scores = torch.einsum("nfk,fvk->nfv", feats, p["gate_weight"]) + p["gate_bias"]
    scores = scores.masked_fill(~mask, float("-inf"))
    w = torch.nan_to_num(torch.softmax(scores, dim=-1), nan=0.0)  # a case without views: all 0
    u = (w * xm).sum(-1)
    z = u @ p["mix"].T + p["bias"]
    if clinical is not None and p["clinical_weight"].shape[1]:
        z = z + clinical @ p["clinical_weight"].T
    return z, w


def minimise_lbfgs(params: list[torch.Tensor], objective, max_iter: int, tolerance_grad: float,
                   tolerance_change: float) -> int:
    """Full-batch L-BFGS (strong Wolfe line search) of ``objective()`` over ``params``; returns the iterations."""
    optimizer = torch.optim.LBFGS(params, lr=1.0, max_iter=max_iter, history_size=20, tolerance_grad=tolerance_grad,
                                  tolerance_change=tolerance_change, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = objective()
        loss.backward()
        return loss

    optimizer.step(closure)
    return int(optimizer.state[params[0]].get("n_iter", 0))


def fit_fusion_head(view_logits: np.ndarray, present: np.ndarray, labels: np.ndarray,
                    clinical: np.ndarray | None = None, case_gate: bool = True, cross_finding: bool = True,
                    pos_weight: Sequence[float] | None = None, l2: float = 1.0, max_iter: int = 300,
                    tolerances: tuple[float, float] = (1e-9, 1e-12)) -> FusionHead:
    """Fit a head on (N, F, V) out-of-fold view logits, (N, V) presence, (N, F) 0/1 labels and optional (N, D)
    encoded clinical inputs. ``pos_weight`` default: n_negative / n_positive per finding, clamped to [1/50,
    50] (as the classifiers' loss). Cases without any view are left out unless clinical inputs are given.
    ``tolerances``: L-BFGS's (gradient, change). Without ``case_gate``, ``cross_finding`` and clinical inputs
    this is the stacked gate (``stacked.fit_stacked_gate``)."""
    x = torch.as_tensor(np.asarray(view_logits), dtype=torch.float64)
    m = torch.as_tensor(np.asarray(present), dtype=torch.bool)
    y = torch.as_tensor(np.asarray(labels), dtype=torch.float64)
    q = None if clinical is None else torch.as_tensor(np.asarray(clinical), dtype=torch.float64)
    if x.ndim != 3 or m.shape != (x.shape[0], x.shape[2]) or y.shape != x.shape[:2] or (
            q is not None and (q.ndim != 2 or q.shape[0] != x.shape[0])):
        raise ValueError(f"shapes: logits {tuple(x.shape)} (N, F, V), present {tuple(m.shape)} (N, V), labels "
                         f"{tuple(y.shape)} (N, F), clinical {None if q is None else tuple(q.shape)} (N, D)")
    keep = m.any(1) if q is None else torch.ones(len(x), dtype=torch.bool)
    x, m, y = x[keep], m[keep], y[keep]
    q = None if q is None else q[keep]
    n, f, v = x.shape
    if n == 0:
        raise ValueError("no case to fit the fusion head on")
    d = 0 if q is None else q.shape[1]
    if pos_weight is None:
        pos = y.sum(0)
        pw = ((n - pos) / pos.clamp(min=1.0)).clamp(1 / 50, 50)
    else:
        pw = torch.as_tensor(pos_weight, dtype=torch.float64)
    eye = torch.eye(f, dtype=torch.float64)
    free = {"gate_bias": torch.zeros(f, v, dtype=torch.float64)}
    if case_gate:
        free["gate_weight"] = torch.zeros(f, v, 3 * v, dtype=torch.float64)
    if cross_finding:
        free["mix"] = eye.clone()
        free["bias"] = torch.zeros(f, dtype=torch.float64)
    if d:
        free["clinical_weight"] = torch.zeros(f, d, dtype=torch.float64)
        free.setdefault("bias", torch.zeros(f, dtype=torch.float64))  # a tabular branch needs its intercept
    for t in free.values():
        t.requires_grad_(True)
    fixed = {"gate_weight": torch.zeros(f, v, 3 * v, dtype=torch.float64), "mix": eye,
             "bias": torch.zeros(f, dtype=torch.float64), "clinical_weight": torch.zeros(f, d, dtype=torch.float64)}
    reg = float(l2) / n

    def params() -> dict[str, torch.Tensor]:
        return {**fixed, **free}

    def objective() -> torch.Tensor:
        p = params()
        z, _ = head_forward(p, x, m, q)
        bce = F.binary_cross_entropy_with_logits(z, y, pos_weight=pw, reduction="none").mean(0).sum()
        centred = p["gate_bias"] - p["gate_bias"].mean(-1, keepdim=True)
        penalty = centred.pow(2).sum() + p["gate_weight"].pow(2).sum() + (p["mix"] - eye).pow(2).sum() \
            + p["clinical_weight"].pow(2).sum()
        return bce + reg * penalty

    iterations = minimise_lbfgs(list(free.values()), objective, max_iter, *tolerances)
    with torch.no_grad():
        loss = float(objective())
    p = {k: t.detach().numpy().copy() for k, t in params().items()}
    p["gate_bias"] = p["gate_bias"] - p["gate_bias"].mean(-1, keepdims=True)  # the softmax ignores a shift
    return FusionHead(p["gate_weight"], p["gate_bias"], p["mix"], p["bias"], p["clinical_weight"], loss, iterations)


__all__ = ["FusionHead", "fit_fusion_head", "head_forward", "minimise_lbfgs"]
