"""2 gloo ranks: ProposalCDSHead gathers proposals and no rank is left out.

Rank 0 holds foreground and background proposals; rank 1 holds background
proposals only (no anchor) at step 0, no proposal at all at step 1 and one
anchor at step 2. Under ``DistributedDataParallel(find_unused_parameters=
False)`` the mean of the ranks' losses and the weights after SGD steps must
equal one process holding the concatenated proposals. A rank that skipped a
gather would leave the other waiting: the gloo timeout and the join deadline
turn that into a failure instead of a hang.
"""
import os
import socket
from datetime import timedelta

import pytest
import torch
import torch.nn as nn
from test_dist_heads import spawn_or_fail

from cds_mm.models.heads import ProposalCDSHead

pytestmark = pytest.mark.dist

WORLD, STEPS, LR = 2, 3, 0.5
GLOO_TIMEOUT_S, DEADLINE_S = 60, 600
BG = 3  # num_classes: the background label


class SharedFcAndHead(nn.Module):
    """A stand-in for the bbox head's shared fc, and the proposal head."""

    def __init__(self, gather):
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(6, 8)
        self.head = ProposalCDSHead(
            in_channels=8,
            projector=dict(
                type='MLPProjector',
                hid_channels=16,
                out_channels=8,
                norm_cfg=None),
            loss=dict(
                type='SupConLoss', temperature=0.2, gather_distributed=gather))

    def forward(self, x1, x2, labels, ious):
        return self.head.loss(
            self.fc(x1).relu(),
            self.fc(x2).relu(), labels, ious)


def rank_batch(step, rank):
    """(x1, x2, labels, ious) of ``rank`` at ``step``."""
    g = torch.Generator().manual_seed(100 * step + rank)
    if rank == 0:
        labels = [0, 1, 0, 2, BG, BG]
        ious = [0.9, 0.85, 0.5, 1.0, 0.0, 0.0]
    elif step == 0:
        labels, ious = [BG] * 3, [0.0] * 3
    elif step == 1:
        labels, ious = [], []
    else:
        labels, ious = [1, BG, BG, 0], [0.95, 0.0, 0.0, 0.6]
    x1 = torch.randn(len(labels), 6, generator=g)
    x2 = x1 + 0.3 * torch.randn(len(labels), 6, generator=g)
    return x1, x2, torch.tensor(labels).long(), torch.tensor(ious).float()


def train(model, batches):
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    history = []
    for batch in batches:
        opt.zero_grad()
        loss = model(*batch)['loss_cds_proposal']
        loss.backward()
        opt.step()
        history.append(loss.detach())
    module = getattr(model, 'module', model)
    return history, {
        k: v.detach().clone()
        for k, v in module.state_dict().items()
    }


def _worker(rank, port, out_dir):
    torch.set_num_threads(1)
    torch.distributed.init_process_group(
        'gloo',
        init_method=f'tcp://127.0.0.1:{port}',
        rank=rank,
        world_size=WORLD,
        timeout=timedelta(seconds=GLOO_TIMEOUT_S))
    model = nn.parallel.DistributedDataParallel(
        SharedFcAndHead(gather=True), find_unused_parameters=False)
    result = train(model, [rank_batch(s, rank) for s in range(STEPS)])
    torch.save(result, os.path.join(out_dir, f'rank{rank}.pt'))
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()


@pytest.fixture(scope='module')
def ranks(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp('dist_proposal')
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    spawn_or_fail(_worker, (port, str(out_dir)), WORLD, DEADLINE_S)
    return [torch.load(out_dir / f'rank{r}.pt') for r in range(WORLD)]


@pytest.fixture(scope='module')
def single():
    batches = []
    for step in range(STEPS):
        parts = [rank_batch(step, r) for r in range(WORLD)]
        batches.append(tuple(torch.cat(t) for t in zip(*parts)))
    return train(SharedFcAndHead(gather=False), batches)


def test_rank_without_foreground_joins_and_matches_one_process(ranks, single):
    ref_history, ref_weights = single
    for step, ref in enumerate(ref_history):
        got = [ranks[r][0][step] for r in range(WORLD)]
        assert ref.item() > 0
        assert torch.stack(got).mean().item() == pytest.approx(
            ref.item(), rel=1e-5, abs=1e-6), (step, got)
    for rank in range(WORLD):
        for key, value in ref_weights.items():
            torch.testing.assert_close(
                ranks[rank][1][key], value, rtol=1e-5, atol=1e-6, msg=key)


def test_rank_without_anchor_has_zero_share(ranks):
    for step in (0, 1):  # background only, then no proposal at all
        assert ranks[1][0][step].item() == 0.0
        assert ranks[0][0][step].item() > 0
    assert ranks[1][0][2].item() > 0
