"""2 gloo ranks: the CDS heads never leave a rank out of a collective.

Rank 0 holds images with boxes, rank 1 images without a usable box (none,
or a view 2 that lost its boxes, told by the boxes' instance ids) and fewer
images, so the ranks hold different
numbers of rows in both heads. The heads gather across ranks under
``DistributedDataParallel(find_unused_parameters=False)`` for a few SGD
steps; the mean of the ranks' losses and the trained weights must equal one
process training on the concatenated batch. A rank that skipped a gather
would leave the other waiting: the gloo timeout and the join deadline turn
that into a failure instead of a hang.
"""
import os
import socket
import time
from datetime import timedelta

import pytest
import torch
import torch.nn as nn

from cds_mm.models.heads import CDSHead, InstanceCDSHead

pytestmark = pytest.mark.dist

WORLD, STEPS, LR = 2, 3, 0.5
GLOO_TIMEOUT_S, DEADLINE_S = 60, 600
BOX = [[2., 2., 14., 14.], [16., 4., 30., 20.], [4., 18., 20., 30.]]


class TwoHeads(nn.Module):
    """A conv stem tapped by an image-level and an instance-level CDS head."""

    def __init__(self, gather):
        super().__init__()
        torch.manual_seed(0)
        loss = dict(
            type='SupConLoss', temperature=0.5, gather_distributed=gather)
        # no BatchNorm: ranks must not differ from one process outside the loss
        proj = dict(
            type='MLPProjector',
            hid_channels=16,
            out_channels=8,
            norm_cfg=None)
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.image_head = CDSHead(
            taps=['stem'],
            in_channels=[8],
            projector=proj,
            loss=loss,
            use_labels=False)
        self.instance_head = InstanceCDSHead(
            taps=['stem'], in_channels=[8], projector=proj, loss=loss)

    def forward(self, img1, img2, boxes1, boxes2, labels, ids1, ids2):
        f1, f2 = self.stem(img1), self.stem(img2)
        losses = self.image_head.loss([f1], [f2])
        losses.update(
            self.instance_head.loss([f1], [f2], boxes1, boxes2, labels,
                                    (img1.shape[-2:], img2.shape[-2:]),
                                    (ids1, ids2)))
        return losses


def _boxes(rows, labels):
    return torch.tensor(rows).reshape(-1, 4), torch.tensor(labels).long()


def rank_batch(step, rank):
    """(img1, img2, boxes1, boxes2, labels, ids1, ids2) of ``rank`` at
    ``step``; ids: the boxes' instance ids per image (None: pair by
    position).

    Rank 0: 3 images with boxes. Rank 1: 2 images, one without boxes and one
    whose view 2 lost its boxes (their ids say so), so no instance row at
    all. Step 1:
    every box of rank 0 has label 0 and rank 1 has none (one label over all
    ranks: SimCLR over boxes); step 2: rank 1 holds a box of label 1, so the
    batch has two labels (SupCon) while rank 0 alone has one.
    """
    g = torch.Generator().manual_seed(100 * step + rank)
    n = 3 if rank == 0 else 2
    img1 = torch.randn(
        n, 3, 32, 32, generator=g) + 2 * torch.randn(
            n, 3, 1, 1, generator=g)  # images that differ also after pooling
    img2 = img1 + 0.3 * torch.randn(n, 3, 32, 32, generator=g)
    if rank == 0:
        one_label = [[0, 0, 0], [0, 0], [0]]
        labels = [[0, 1, 1], [2, 0], [1]] if step == 0 else one_label
        boxes, labels = zip(*[_boxes(BOX[:len(lb)], lb) for lb in labels])
        return (img1, img2, list(boxes), list(boxes), list(labels), [None] * 3,
                [None] * 3)
    none, no_label = _boxes([], [])
    two, two_labels = _boxes(BOX[:2], [1, 1])
    if step == 2:  # usable boxes of label 1 on rank 1
        return (img1, img2, [none,
                             two], [none,
                                    two], [no_label,
                                           two_labels], [None] * 2, [None] * 2)
    return (img1, img2, [none, two], [none, none], [no_label, two_labels],
            [None, torch.tensor([0, 1])], [None,
                                           torch.tensor([], dtype=int)])


def train(model, batches):
    """SGD steps; returns the per-step losses by key and the final weights."""
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    history = []
    for batch in batches:
        opt.zero_grad()
        losses = model(*batch)
        sum(losses.values()).backward()
        opt.step()
        history.append({k: v.detach() for k, v in losses.items()})
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
        TwoHeads(gather=True), find_unused_parameters=False)
    result = train(model, [rank_batch(s, rank) for s in range(STEPS)])
    torch.save(result, os.path.join(out_dir, f'rank{rank}.pt'))
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()


def spawn_or_fail(fn, args, nprocs, deadline_s):
    """``torch.multiprocessing.spawn`` that kills the workers and fails the
    test when they are not done after ``deadline_s`` seconds."""
    ctx = torch.multiprocessing.start_processes(
        fn, args=args, nprocs=nprocs, join=False)
    stop = time.monotonic() + deadline_s
    while not ctx.join(timeout=5):
        if time.monotonic() > stop:
            for proc in ctx.processes:
                if proc.is_alive():
                    proc.kill()
            pytest.fail(f'gloo workers still running after {deadline_s} s: '
                        'a rank waits in a collective that another skipped')


@pytest.fixture(scope='module')
def ranks(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp('dist_heads')
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    spawn_or_fail(_worker, (port, str(out_dir)), WORLD, DEADLINE_S)
    return [torch.load(out_dir / f'rank{r}.pt') for r in range(WORLD)]


def _concat(parts):
    img1 = torch.cat([p[0] for p in parts])
    img2 = torch.cat([p[1] for p in parts])
    return (img1, img2) + tuple(
        sum((p[i] for p in parts), []) for i in range(2, 7))


@pytest.fixture(scope='module')
def single():
    batches = [
        _concat([rank_batch(s, r) for r in range(WORLD)]) for s in range(STEPS)
    ]
    return train(TwoHeads(gather=False), batches)


def test_rank_without_boxes_joins_and_matches_one_process(ranks, single):
    ref_history, ref_weights = single
    for step, ref in enumerate(ref_history):
        assert set(ref) == {'loss_cds_s0', 'loss_cds_inst_s0'}
        for key, value in ref.items():
            got = [ranks[r][0][step][key] for r in range(WORLD)]
            assert value.item() > 0
            assert torch.stack(got).mean().item() == pytest.approx(
                value.item(), rel=1e-5, abs=1e-6), (step, key, got)
    for rank in range(WORLD):
        for key, value in ref_weights.items():
            torch.testing.assert_close(
                ranks[rank][1][key], value, rtol=1e-5, atol=1e-6, msg=key)


def test_rank1_without_instance_rows_has_zero_share(ranks):
    # steps 0 and 1: rank 1 holds no instance row, so its share of the
    # gathered loss is 0, yet it ran (and sent its gradient back)
    for step in (0, 1):
        assert ranks[1][0][step]['loss_cds_inst_s0'].item() == 0.0
        assert ranks[0][0][step]['loss_cds_inst_s0'].item() > 0
    assert ranks[1][0][2]['loss_cds_inst_s0'].item() > 0
