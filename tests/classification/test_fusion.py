"""Fusion: gate weights sum to one per finding, missing views are masked out (not zero-filled)."""

from __future__ import annotations

import pytest
import torch

from orthodiff_auto.classification.fusion import FusedClassifier, gate_weights_table
from orthodiff_auto.classification.model import ViewClassifier
from orthodiff_auto.plans.schema import ArchitectureSpec

ARCH = ArchitectureSpec(
    n_stages=2, features_per_stage=(4, 8), kernel_sizes=((3, 3, 3), (3, 3, 3)), strides=((1, 1, 1), (2, 2, 2)),
    n_conv_per_stage=(1, 1), n_conv_per_stage_decoder=(1,),
)
VIEWS = ["sag", "cor", "ax"]
SIZE = (4, 8, 8)


def _model(mode: str, findings: int = 3) -> FusedClassifier:
    torch.manual_seed(0)
    model = FusedClassifier(VIEWS, {v: ARCH for v in VIEWS}, findings, mode).eval()
    if mode in ("gate", "stacked"):
        with torch.no_grad():
            model.gate_logits.copy_(torch.randn_like(model.gate_logits) / model.gate_scale)
    return model


def _inputs(batch: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {v: torch.randn(batch, 1, *SIZE, generator=g) for v in VIEWS}


def test_view_classifier_shapes():
    model = ViewClassifier(ARCH, 5)
    pooled, logits = model.forward_features(torch.randn(2, 1, *SIZE))
    assert pooled.shape == (2, 5, 8) and logits.shape == (2, 5)
    attn = model.head.attention_weights(model.encoder(torch.randn(2, 1, *SIZE)))
    torch.testing.assert_close(attn.sum(-1), torch.ones(2, 5))


def test_gate_weights_sum_to_one_per_finding():
    model = _model("gate")
    w = model.gate_weights()
    assert w.shape == (3, 3)
    torch.testing.assert_close(w.sum(-1), torch.ones(3))
    table = gate_weights_table(w, ["a", "b", "c"], VIEWS)
    assert list(table) == ["a", "b", "c"] and list(table["a"]) == VIEWS
    for row in table.values():
        assert sum(row.values()) == pytest.approx(1.0)


def test_gate_renormalises_over_present_views():
    model = _model("gate")
    present = torch.tensor([[True, True, True], [True, False, True], [False, True, False]])
    with torch.no_grad():
        out = model(_inputs(3), present)
    w = out["weights"]
    torch.testing.assert_close(w.sum(-1), torch.ones(3, 3))
    assert (w[1, :, 1] == 0).all() and (w[2, :, 0] == 0).all() and (w[2, :, 2] == 0).all()
    expected = torch.softmax(model.gate_scale * model.gate_logits[:, [0, 2]], -1)
    torch.testing.assert_close(w[1][:, [0, 2]], expected)
    # a case with one view gets exactly that view's logits
    torch.testing.assert_close(out["logits"][2], out["view_logits"][2, :, 1])
    torch.testing.assert_close(w[0], model.gate_weights())


@pytest.mark.parametrize("mode", ["gate", "stacked", "concat"])
def test_missing_view_is_masked_not_zero_filled(mode):
    """The output of a case without a view does not depend on what stands in for that view."""
    model = _model(mode)
    present = torch.tensor([[True, False, True], [True, True, True]])
    a, b = _inputs(2, seed=1), _inputs(2, seed=1)
    b["cor"][0] = torch.randn(1, *SIZE) * 100  # other placeholder content for the absent view
    with torch.no_grad():
        out_a, out_b = model(a, present), model(b, present)
    torch.testing.assert_close(out_a["logits"][0], out_b["logits"][0])
    assert (out_a["view_logits"][0, :, 1] == 0).all()
    # ...and a case whose view is present does change with it
    b["cor"][1] = torch.randn(1, *SIZE) * 100
    with torch.no_grad():
        assert not torch.allclose(model(b, present)["logits"][1], out_a["logits"][1])


def test_concat_starts_as_mean_of_view_logits():
    model = _model("concat")
    present = torch.ones(2, 3, dtype=torch.bool)
    with torch.no_grad():
        out = model(_inputs(2), present)
    torch.testing.assert_close(out["logits"], out["view_logits"].mean(-1), rtol=1e-4, atol=1e-5)
    # a missing view uses its learned "missing" embedding, a parameter that training reaches
    present = torch.tensor([[True, False, True]])
    out = model(_inputs(1), present)
    out["logits"].sum().backward()
    assert model.missing["cor"].grad is not None and model.missing["cor"].grad.abs().sum() > 0


@pytest.mark.parametrize("mode", ["gate", "concat"])
def test_view_absent_from_whole_batch_keeps_every_parameter_in_the_graph(mode):
    """DistributedDataParallel needs a gradient for every parameter, even when no case has a view."""
    model = _model(mode).train()
    present = torch.tensor([[True, True, False], [True, False, False]])
    out = model(_inputs(2), present)
    torch.testing.assert_close(out["view_logits"][:, :, 2], torch.zeros(2, 3))
    (out["logits"].sum() + out["view_logits"].sum()).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
    assert all(p.grad.abs().sum() == 0 for p in model.branches["ax"].parameters())


def test_gate_learns_from_fused_loss_branches_from_their_own():
    """Gate mode: the fused logit sees the branches detached, so only the gate learns from it."""
    model = _model("gate").train()
    out = model(_inputs(2), torch.ones(2, 3, dtype=torch.bool))
    out["logits"].sum().backward()
    assert model.gate_logits.grad is not None and model.gate_logits.grad.abs().sum() > 0
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in model.branches.parameters())


def test_cross_attention_masks_absent_views_and_trains():
    """xattn: an absent view's placeholder changes nothing; a case's logits depend on its present views; the
    queries, token maps and branches all get gradients."""
    model = _model("xattn")
    present = torch.tensor([[True, True, True], [True, False, True], [False, True, False]])
    x = _inputs(3)
    with torch.no_grad():
        out = model(x, present)
        other = dict(x)
        other["cor"] = x["cor"].clone()
        other["cor"][1] = 1000.0  # case 1 has no coronal scan
        other["sag"] = x["sag"].clone()
        other["sag"][2] = -1000.0  # case 2 has no sagittal scan
        changed = model(other, present)
    assert out["logits"].shape == (3, 3) and model.gate_weights() is None
    torch.testing.assert_close(changed["logits"], out["logits"])
    with torch.no_grad():
        seen = dict(x)
        seen["ax"] = x["ax"] + 1.0  # cases 0 and 1 have an axial scan: their fused logits move
        moved = model(seen, present)
    assert not torch.allclose(moved["logits"][:2], out["logits"][:2])
    torch.testing.assert_close(moved["logits"][2], out["logits"][2])
    model.train()
    model(x, present)["logits"].sum().backward()
    assert model.queries.grad.abs().sum() > 0 and model.token_maps["ax"].weight.grad.abs().sum() > 0
    assert model.xattn_weight.grad.abs().sum() > 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.branches["cor"].encoder.parameters())


def test_cross_attention_of_a_case_with_one_view_is_that_views_attention_alone():
    """An absent view's tokens take no attention at all (masked, not zero tokens): a sagittal-only case gets
    exactly what a cross-attention model built on the sagittal view alone gives."""
    model = _model("xattn")
    alone = FusedClassifier(["sag"], {"sag": ARCH}, 3, "xattn").eval()
    state = {k: v for k, v in model.state_dict().items()
             if not k.startswith(("branches.cor", "branches.ax", "token_maps.cor", "token_maps.ax"))}
    state["view_embedding"] = model.view_embedding.detach()[:1]
    alone.load_state_dict(state)
    x = _inputs(2)
    with torch.no_grad():
        full = model(x, torch.tensor([[True, False, False], [True, False, False]]))["logits"]
        single = alone({"sag": x["sag"]}, torch.tensor([[True], [True]]))["logits"]
    torch.testing.assert_close(full, single)
