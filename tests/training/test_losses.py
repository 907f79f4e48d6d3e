import pytest
import torch

from orthodiff_auto.training.losses import DeepSupervisionLoss, DiceCELoss, deep_supervision_weights, downsample_target


def _perfect_logits(target, num_classes, scale=20.0):
    return torch.nn.functional.one_hot(target[:, 0], num_classes).movedim(-1, 1).float() * scale


def test_perfect_prediction_has_near_zero_loss_and_wrong_is_high():
    t = torch.randint(0, 3, (2, 1, 6, 8, 8))
    loss = DiceCELoss(3)
    good = loss(_perfect_logits(t, 3), t)
    bad = loss(_perfect_logits((t + 1) % 3, 3), t)
    assert good < 1e-3
    assert bad > 1.5


def test_ignored_voxels_do_not_matter():
    torch.manual_seed(0)
    t = torch.randint(0, 3, (2, 1, 6, 8, 8))
    t[:, :, :3] = 5  # sparse annotation: first half unlabelled
    loss = DiceCELoss(3, ignore_label=5)
    logits = torch.randn(2, 3, 6, 8, 8)
    other = logits.clone()
    other[:, :, :3] = torch.randn(2, 3, 3, 8, 8) * 10  # anything in the ignored region
    assert torch.allclose(loss(logits, t), loss(other, t))
    # and the labelled region still drives the loss
    changed = logits.clone()
    changed[:, :, 3:] += torch.randn(2, 3, 3, 8, 8) * 10
    assert not torch.allclose(loss(logits, t), loss(changed, t))


def test_ignore_label_perfect_on_annotated_part_is_near_zero():
    t = torch.randint(0, 2, (1, 1, 4, 4, 4))
    logits = _perfect_logits(t, 2)
    t[:, :, :2] = 9
    logits[:, :, :2] = torch.randn(1, 2, 2, 4, 4) * 5
    assert DiceCELoss(2, ignore_label=9)(logits, t) < 1e-3


def test_loss_has_gradients():
    t = torch.randint(0, 3, (1, 1, 4, 4, 4))
    logits = torch.randn(1, 3, 4, 4, 4, requires_grad=True)
    DiceCELoss(3)(logits, t).backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_deep_supervision_weights():
    assert deep_supervision_weights(1) == [1.0]
    w = deep_supervision_weights(4)
    assert w[-1] == 0 and abs(sum(w) - 1) < 1e-9 and w[0] == 2 * w[1] == 4 * w[2]


def test_deep_supervision_combines_levels():
    t = torch.randint(0, 2, (1, 1, 8, 8, 8))
    targets = downsample_target(t, [(1, 1, 1), (0.5, 0.5, 0.5), (1, 0.25, 0.25)])
    assert [tuple(x.shape[2:]) for x in targets] == [(8, 8, 8), (4, 4, 4), (8, 2, 2)]
    outs = [_perfect_logits(x, 2) for x in targets]
    ds = DeepSupervisionLoss(DiceCELoss(2), [0.6, 0.4, 0.0])
    assert ds(outs, targets) < 1e-3
    outs[1] = -outs[1]
    assert ds(outs, targets) > 0.4 * 1.5
    outs[2] = -outs[2]  # zero weight: no effect
    assert ds(outs, targets) == pytest.approx(ds([outs[0], outs[1], -outs[2]], targets))
