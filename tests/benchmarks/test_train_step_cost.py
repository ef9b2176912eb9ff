"""The cost benchmark's measuring child and its table (no real model)."""
import argparse
import json
import os.path as osp

import torch
from cds_test_utils import REPO_ROOT, load_tool

cost = load_tool(osp.join(REPO_ROOT, 'benchmarks', 'train_step_cost.py'))


def test_flops_are_per_step_of_a_multi_step_variant(monkeypatch, capsys):
    """``cds_every2`` times 2 steps per call: its FLOPs are their mean."""
    a, b = torch.randn(8, 16), torch.randn(16, 4)
    steps = []

    def step(batches):
        for i, _ in enumerate(batches):
            steps.append(i)
            if i == 0:  # one of the two steps multiplies
                torch.mm(a, b)

    monkeypatch.setattr(cost, 'build_step', lambda name, device: (step, 2))
    monkeypatch.setattr(cost, 'batch_of', lambda group, args: {})
    cost.measure_memory('cls/cds_every2',
                        argparse.Namespace(device='cpu', det_size=64))
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out['gflop'] * 1e9 == 2 * 8 * 16 * 4 / 2
    assert out['peak_mib'] >= 0
    assert len(steps) == cost.MEMORY_STEPS + 2


def test_table_shows_flops_against_the_floor():
    row = dict(median_ms=1.0, peak_rss_mib=1.0)
    data = dict(
        meta=dict(
            memory_key='peak_rss_mib',
            git_commit='0123456789ab',
            date='2026-12-02',
            machine='m',
            torch='t',
            threads=2,
            device='cpu',
            rounds=1,
            warmup=0,
            cls='c',
            det='d'),
        cls=dict(
            baseline=dict(row, gflop=2.0),
            floor=dict(row, gflop=4.0),
            cds=dict(row, gflop=4.4)))
    row = '| cls | cds | 1.0 | 1.00 | 1.00 | 1 | 1.00 | 1.00 | 4.40 | 1.10 |'
    assert row in cost.render_train_step_cost(data)


def test_pooled_det_variant_drops_only_the_conv_of_the_shipped_head():
    """``det/cds_pool`` is the shipped FPN head minus its 3x3 conv: same
    widths, loss and taps (the change merges into the config's head)."""
    _, _, config, changes, _ = cost.variant('det/cds_pool')
    shipped, _ = cost.model_cfg(config, {}, det=True)
    pooled, _ = cost.model_cfg(config, changes, det=True)
    assert shipped.cds_head.projector.num_convs == 1
    assert pooled.cds_head.projector.pop('num_convs') == 0
    shipped.cds_head.projector.pop('num_convs')
    assert pooled.cds_head == shipped.cds_head


def test_det_rows_keep_the_heads_they_were_measured_with():
    """The COCO configs changed under the rows: ``det/cds`` is still the
    image-level head alone on P2-P5 and ``det/cds_ins`` that head with the
    instance-level head on P2-P3, their recorded layouts (the weights do
    not change a step's cost)."""
    fpn = [f'neck.fpn_convs.{i}' for i in range(4)]
    _, _, config, changes, _ = cost.variant('det/cds')
    img, _ = cost.model_cfg(config, changes, det=True)
    assert img.get('instance_head') is None and img.cds_head.taps == fpn
    _, _, config, changes, _ = cost.variant('det/cds_ins')
    both, _ = cost.model_cfg(config, changes, det=True)
    assert both.cds_head.taps == fpn
    assert both.cds_head.in_channels == img.cds_head.in_channels
    assert both.instance_head.taps == fpn[:2]
    assert both.instance_head.in_channels == [256, 256]
