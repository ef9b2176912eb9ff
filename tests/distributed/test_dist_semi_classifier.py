"""2 gloo ranks: SemiCDSClassifier joins every collective whatever rows a rank
holds.

With ``gather_distributed=True`` both contrastive losses (SupCon on the
labelled rows, SimCLR on the unlabelled ones) gather across ranks. Rank 1
holds no unlabelled row at step 0 and rank 0 no labelled row at step 1, so a
loss called only ``if`` a rank has rows of its group would leave the other
rank waiting in the gather (or mispair it with DDP's gradient all-reduce):
the gloo timeout and the join deadline turn that into a failure, not a hang.
"""
import os
import socket
from datetime import timedelta

import pytest
import torch
import torch.nn as nn
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample
from test_dist_heads import spawn_or_fail

import cds_mm  # noqa: F401

pytestmark = pytest.mark.dist

WORLD, GLOO_TIMEOUT_S, DEADLINE_S = 2, 60, 400
# labels per rank and step; None: an unlabelled image
LABELS = {
    0: [(0, 1, None, None), (None, None, None)],
    1: [(1, 2, 0), (1, 2, None)],
}
MODEL = dict(
    type='SemiCDSClassifier',
    classifier=dict(
        type='ImageClassifier',
        backbone=dict(
            type='ResNet_CIFAR',
            depth=18,
            stem_channels=8,
            base_channels=8,
            out_indices=(3, )),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=3, in_channels=64)),
    cds_head=dict(
        type='CDSHead',
        taps=['backbone.layer2', 'backbone.layer4'],
        projector=dict(type='MLPProjector', hid_channels=16, out_channels=8),
        loss=dict(type='SupConLoss', temperature=0.5,
                  gather_distributed=True)),
    probe_size=16)


def rank_batch(step, rank):
    labels = LABELS[rank][step]
    g = torch.Generator().manual_seed(10 * step + rank)
    views = [torch.randn(len(labels), 3, 16, 16, generator=g) for _ in '12']
    samples = [
        DataSample() if y is None else DataSample().set_gt_label(y)
        for y in labels
    ]
    return views, samples


def _worker(rank, port, out_dir):
    torch.set_num_threads(1)
    torch.distributed.init_process_group(
        'gloo',
        init_method=f'tcp://127.0.0.1:{port}',
        rank=rank,
        world_size=WORLD,
        timeout=timedelta(seconds=GLOO_TIMEOUT_S))
    torch.manual_seed(0)
    model = nn.parallel.DistributedDataParallel(
        MODELS.build(MODEL).train(), find_unused_parameters=False)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    history = []
    for step in range(len(LABELS[rank])):
        opt.zero_grad()
        losses = model(*rank_batch(step, rank), mode='loss')
        sum(losses.values()).backward()
        opt.step()
        history.append({k: v.item() for k, v in losses.items()})
    weights = {  # parameters: each rank's BatchNorm buffers are its own
        k: v.detach().clone()
        for k, v in model.module.named_parameters()
    }
    torch.save((history, weights), os.path.join(out_dir, f'rank{rank}.pt'))
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()


@pytest.fixture(scope='module')
def ranks(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp('dist_semi')
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    spawn_or_fail(_worker, (port, str(out_dir)), WORLD, DEADLINE_S)
    return [torch.load(out_dir / f'rank{r}.pt') for r in range(WORLD)]


def test_every_rank_makes_every_collective_every_step(ranks):
    keys = {
        'loss_cls', 'loss_cds_s0', 'loss_cds_s1', 'loss_unsup_s0',
        'loss_unsup_s1'
    }
    for step in range(2):
        for rank in range(WORLD):
            losses = ranks[rank][0][step]
            assert set(losses) == keys, (rank, step)
            assert all(
                torch.isfinite(torch.tensor(v)) for v in losses.values())
    # a rank without rows of a group holds a zero share of that gathered loss
    assert ranks[1][0][0]['loss_unsup_s0'] == 0.0
    assert ranks[0][0][0]['loss_unsup_s0'] > 0
    assert ranks[0][0][1]['loss_cds_s0'] == 0.0
    assert ranks[1][0][1]['loss_cds_s0'] > 0
    # the ranks stepped together: DDP averaged the same gradients
    for key, value in ranks[0][1].items():
        torch.testing.assert_close(ranks[1][1][key], value, msg=key)
