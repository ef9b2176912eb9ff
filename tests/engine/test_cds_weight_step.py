"""CDSWeightHook(milestones=..., gamma=...): FSCE's step decay of the
contrastive weight, on top of any schedule."""
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn
from mmengine.logging import MessageHub

from cds_mm.engine.hooks import CDSWeightHook
from cds_mm.models.heads import ProposalCDSHead


def _runner(model, it, max_iters=100):
    return SimpleNamespace(
        model=model,
        iter=it,
        max_iters=max_iters,
        epoch=0,
        max_epochs=1,
        message_hub=MessageHub.get_instance('test_cds_weight_step'))


@pytest.mark.parametrize('it,want', [(0, 1.0), (39, 1.0), (40, 0.5), (79, 0.5),
                                     (80, 0.25), (99, 0.25)])
def test_halved_at_each_milestone(it, want):
    hook = CDSWeightHook(milestones=[80, 40])
    assert hook.current_scale(_runner(None, it)) == pytest.approx(want)


def test_composes_with_warmup_and_gamma():
    hook = CDSWeightHook(warmup_iters=20, milestones=[10], gamma=0.1)
    # ramp 10 / 20, times 0.1 after the milestone
    assert hook.current_scale(_runner(None, 10)) == pytest.approx(0.05)
    assert hook.current_scale(_runner(None, 9)) == pytest.approx(9 / 20)


def test_scales_the_proposal_head_loss():
    head = ProposalCDSHead(in_channels=4)
    model = nn.Module()
    model.proposal_head = head
    g = torch.Generator().manual_seed(0)
    args = (torch.randn(4, 4, generator=g), torch.randn(4, 4, generator=g),
            torch.tensor([0, 0, 1, 2]), torch.tensor([0.9, 0.85, 0.0, 0.0]))
    full = head.loss(*args)['loss_cds_proposal']
    hook = CDSWeightHook(milestones=[5])
    runner = _runner(model, 5)
    hook.before_train(runner)
    hook.before_train_iter(runner, batch_idx=5)
    assert head.weight_scale == 0.5
    torch.testing.assert_close(
        head.loss(*args)['loss_cds_proposal'], 0.5 * full)


@pytest.mark.parametrize('kwargs,match', [
    (dict(milestones=[-1]), 'milestones'),
    (dict(milestones=[1.5]), 'milestones'),
    (dict(gamma=1.5), 'gamma'),
    (dict(gamma=-0.1), 'gamma'),
])
def test_bad_args(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CDSWeightHook(**kwargs)
