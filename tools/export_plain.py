"""Strip the CDS wrapper and heads from a checkpoint: a plain model remains.

Writes, into ``--out-dir``:

- ``plain.pth``: the inner classifier/detector weights, loadable with
  ``strict=True`` by the plain upstream config (``model.classifier`` /
  ``model.detector`` of the CDS config);
- ``backbone.pth``: the backbone alone, keys kept as ``backbone.*``, for
  ``init_cfg=dict(type='Pretrained', prefix='backbone.', checkpoint=...)`` in
  any mmdet/mmpretrain config (the paper's CDS-pretrained detector backbone);
- ``heads.pth``: the CDS heads (``cds_head.*``, ``instance_head.*``), for a
  distilled-CDS student whose teacher this model is
  (``DistilledCDSClassifier.teacher_heads_ckpt``).

A distilled student's teacher and adapters are training-only too: its export
is the plain student.

Example:
    python tools/export_plain.py configs/demo/resnet18-w16_cds_fashionmnist.py \\
        work_dirs/demo/epoch_1.pth --out-dir work_dirs/demo/export
"""
import argparse
import os
import os.path as osp
import sys
from collections import OrderedDict
from typing import Dict, Tuple

import torch

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import cds_mm  # noqa: E402,F401  (shims + registries)

WRAPPED = ('classifier.', 'detector.')
HEADS = ('cds_head.', 'instance_head.')
TRAINING_ONLY = HEADS + ('teacher.', 'kd_adapters.')


def split_state_dict(state_dict: Dict[str, torch.Tensor]
                     ) -> Tuple[str, 'OrderedDict[str, torch.Tensor]']:
    """The inner model's weights, without the wrapper prefix or CDS heads.

    Returns:
        tuple: (the prefix found, ``'classifier.'`` or ``'detector.'``; the
        plain state dict).

    Raises:
        ValueError: if the checkpoint holds no CDS-wrapped model.
    """
    prefixes = {p for p in WRAPPED for k in state_dict if k.startswith(p)}
    if len(prefixes) != 1:
        raise ValueError(
            'checkpoint holds no CDS-wrapped model: expected keys under '
            f'exactly one of {WRAPPED}, found {sorted(prefixes) or "none"}')
    prefix = prefixes.pop()
    plain = OrderedDict(
        (k[len(prefix):], v) for k, v in state_dict.items()
        if k.startswith(prefix))
    unknown = [k for k in state_dict
               if not k.startswith(prefix) and not k.startswith(TRAINING_ONLY)
               and not k.startswith('data_preprocessor.')]
    if unknown:
        raise ValueError(f'unexpected keys outside {prefix!r} and the CDS '
                         f'heads: {unknown[:5]}')
    return prefix, plain


def atomic_save(obj, path: str) -> None:
    """``torch.save`` to a temporary file, then rename: never a half file."""
    tmp = f'{path}.tmp'
    torch.save(obj, tmp)
    os.replace(tmp, path)


def export(checkpoint: str, out_dir: str) -> Dict[str, str]:
    """Write ``plain.pth``, ``backbone.pth`` and ``heads.pth``; return their paths."""
    ckpt = torch.load(checkpoint, map_location='cpu', weights_only=True)
    state_dict = ckpt.get('state_dict', ckpt)
    _, plain = split_state_dict(state_dict)
    backbone = OrderedDict(
        (k, v) for k, v in plain.items() if k.startswith('backbone.'))
    meta = dict(ckpt.get('meta', {}), cds_mm_export=osp.basename(checkpoint))
    os.makedirs(out_dir, exist_ok=True)
    heads = OrderedDict((k, v) for k, v in state_dict.items() if k.startswith(HEADS))
    paths = dict(plain=osp.join(out_dir, 'plain.pth'),
                 backbone=osp.join(out_dir, 'backbone.pth'),
                 heads=osp.join(out_dir, 'heads.pth'))
    atomic_save(dict(state_dict=plain, meta=meta), paths['plain'])
    atomic_save(dict(state_dict=backbone, meta=meta), paths['backbone'])
    atomic_save(dict(state_dict=heads, meta=meta), paths['heads'])
    return paths


def check_strict(config: str, plain_path: str) -> None:
    """Build the plain inner model of ``config`` and load ``strict=True``."""
    from mmengine.config import Config
    from mmengine.registry import MODELS, DefaultScope

    cfg = Config.fromfile(config)
    inner = cfg.model.get('classifier', cfg.model.get('detector'))
    if inner is None:
        raise ValueError(f'{config}: model has neither classifier= nor detector=')
    # the config's own scope, whatever an earlier build in this process left
    with DefaultScope.overwrite_default_scope(cfg.get('default_scope', 'mmpretrain')):
        model = MODELS.build(inner)
    state_dict = torch.load(plain_path, map_location='cpu',
                            weights_only=True)['state_dict']
    model.load_state_dict(state_dict, strict=True)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', help='the CDS config the checkpoint came from')
    parser.add_argument('checkpoint', help='checkpoint saved by tools/train.py')
    parser.add_argument('--out-dir', required=True, help='where to write')
    return parser.parse_args()


def main():
    args = parse_args()
    paths = export(args.checkpoint, args.out_dir)
    check_strict(args.config, paths['plain'])
    print(f'plain model (strict load checked): {paths["plain"]}')
    print(f'backbone only (prefix "backbone."): {paths["backbone"]}')
    print(f'CDS heads only (a distilled-CDS teacher needs them): {paths["heads"]}')


if __name__ == '__main__':
    main()
