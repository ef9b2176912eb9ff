"""``tools/train.py --amp`` on CPU: the CDS classifier and detector train under
bf16 autocast.

On a CPU-only machine ``--amp`` gives an ``AmpOptimWrapper`` with
``dtype='bfloat16'``, which ``cds_mm.compat.enable_cpu_amp_optim_wrapper`` lets
build; the detector's mmcv ``nms`` / ``RoIAlign`` run through
``cds_mm.compat.run_mmcv_cpu_ops_in_fp32``. Each run takes 3 iterations and
must log finite values for every loss, the ``loss_cds_*`` terms included, and
save finite fp32 weights. In process, the classifier's ``loss()`` under bf16
autocast gets bf16 projections and returns fp32 ``loss_cds_*`` (SupConLoss
computes in fp32).
"""
import glob
import math

import pytest
import torch
from cds_test_utils import (DEMO_CLS_CFG, DEMO_DET_CFG, cls_data_cfg,
                            det_data_cfg, popen_train, scalars, tiny_cfg,
                            write_demo_data)
from mmengine.config import Config

import cds_mm  # noqa: F401  (registries; conftest applies cds_mm.compat)

CDS_KEYS = dict(
    cls=[f'loss_cds_s{i}' for i in range(4)],
    det=[f'loss_cds_s{i}' for i in range(4)] + ['loss_cds_inst_s0'])


@pytest.fixture(scope='module')
def amp_runs(tmp_path_factory):
    """Both ``--amp`` runs, side by side: {kind: (work_dir, log)}."""
    root = tmp_path_factory.mktemp('amp')
    write_demo_data(root)
    (root / 'cls.py'
     ).write_text(tiny_cfg(DEMO_CLS_CFG) + cls_data_cfg(str(root / 'fmnist')))
    (root / 'det.py').write_text(
        tiny_cfg(DEMO_DET_CFG) + det_data_cfg(str(root / 'shapes') + '/'))
    procs = {
        kind: popen_train(root / f'{kind}.py', root / kind, '--amp',
                          '--no-validate')
        for kind in ('cls', 'det')
    }
    return {
        kind: (root / kind, proc.communicate(timeout=400)[0], proc.returncode)
        for kind, proc in procs.items()
    }


@pytest.mark.parametrize('kind', ['cls', 'det'])
def test_amp_run_has_finite_losses(amp_runs, kind):
    work_dir, log, returncode = amp_runs[kind]
    assert returncode == 0, log[-4000:]
    dumped = Config.fromfile(glob.glob(str(work_dir / '*.py'))[0])
    assert dumped.optim_wrapper.type == 'AmpOptimWrapper'
    assert dumped.optim_wrapper.get('dtype') == 'bfloat16'  # CPU autocast
    steps = scalars(str(work_dir))
    assert sorted(steps) == [1, 2, 3]
    for step, entry in steps.items():
        assert all(math.isfinite(v) for v in entry.values()), (step, entry)
        assert set(CDS_KEYS[kind]) <= set(entry), entry
        assert entry['loss'] > 0
    # every CDS term is a real loss on some iteration, not the all-zero
    # fallback
    assert all(any(steps[s][k] > 0 for s in steps)
               for k in CDS_KEYS[kind]), steps
    ckpt = torch.load(work_dir / 'iter_3.pth', map_location='cpu')
    for key, value in ckpt['state_dict'].items():
        # weights stay fp32 under autocast
        assert value.dtype != torch.bfloat16, key
        assert torch.isfinite(value.float()).all(), key


def test_cds_losses_are_fp32_under_bf16_autocast(amp_runs):
    """The path ``--amp`` takes, in process: bf16 projections in, fp32
    ``loss_cds_*`` out."""
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS
    from mmpretrain.structures import DataSample
    work_dir = amp_runs['cls'][0]
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(
            Config.fromfile(str(work_dir.parent / 'cls.py')).model)
    seen = []  # the projections the loss receives
    model.cds_head.loss_module.register_forward_pre_hook(
        lambda m, args: seen.append(args[0].dtype))
    g = torch.Generator().manual_seed(0)
    views = [torch.randn(4, 3, 32, 32, generator=g) for _ in range(2)]
    samples = [DataSample().set_gt_label(i % 2) for i in range(4)]
    with torch.autocast('cpu', dtype=torch.bfloat16):
        losses = model.loss(views, samples)
    # autocast reached the projectors: bf16 projections in
    assert seen and set(seen) == {torch.bfloat16}
    cds = {k: v for k, v in losses.items() if k.startswith('loss_cds_')}
    assert sorted(cds) == CDS_KEYS['cls']
    assert all(v.dtype == torch.float32 and torch.isfinite(v)
               for v in cds.values()), cds
