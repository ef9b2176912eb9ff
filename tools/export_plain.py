"""Strip the CDS wrapper and heads from a checkpoint: a plain model remains.

Writes, into ``--out-dir``:

- ``plain.pth``: the inner classifier/detector weights, loadable with
  ``strict=True`` by the plain upstream config (``model.classifier`` /
  ``model.detector`` of the CDS config);
- ``backbone.pth``: the backbone alone, keys kept as ``backbone.*``, for
  ``init_cfg=dict(type='Pretrained', prefix='backbone.', checkpoint=...)`` in
  any mmdet/mmpretrain config (the paper's CDS-pretrained detector backbone);
- ``heads.pth``: the CDS heads (``cds_head.*``, ``instance_head.*``,
  ``proposal_head.*``), for a
  distilled-CDS student whose teacher this model is
  (``DistilledCDSClassifier.teacher_heads_ckpt``).

A distilled student's teacher and adapters are training-only too: its export
is the plain student.

The export is all or nothing: the plain weights are first loaded with
``strict=True`` into the plain model of the config, in memory, and only then
are the three files written, each atomically (a temporary file renamed over
the target). A checkpoint that fails the check leaves no file behind.

Example:
    python tools/export_plain.py \\
        configs/demo/resnet18-w16_cds_1xb128_fashionmnist.py \\
        work_dirs/demo/epoch_1.pth --out-dir work_dirs/demo/export
"""
import argparse
import os.path as osp
import sys
from collections import OrderedDict
from typing import Dict, Tuple, Union

import torch

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import cds_mm  # noqa: E402,F401  (registries)
import cds_mm.compat  # noqa: E402,F401  (opt-in stack fixes)
from cds_mm.utils import atomic_write  # noqa: E402

WRAPPED = ('classifier.', 'detector.')
SCOPES = dict(classifier='mmpretrain', detector='mmdet')
HEADS = ('cds_head.', 'instance_head.', 'proposal_head.')
TRAINING_ONLY = HEADS + ('teacher.', 'kd_adapters.')


def split_state_dict(
    state_dict: Dict[str, torch.Tensor]
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
    plain = OrderedDict((k[len(prefix):], v) for k, v in state_dict.items()
                        if k.startswith(prefix))
    unknown = [
        k for k in state_dict
        if not k.startswith(prefix) and not k.startswith(TRAINING_ONLY)
        and not k.startswith('data_preprocessor.')
    ]
    if unknown:
        raise ValueError(f'unexpected keys outside {prefix!r} and the CDS '
                         f'heads: {unknown[:5]}')
    return prefix, plain


def export(config: Union[str, dict], checkpoint: str,
           out_dir: str) -> Dict[str, str]:
    """Check, then write ``plain.pth``, ``backbone.pth`` and ``heads.pth``.

    Args:
        config (str | dict): The CDS config file the checkpoint came from,
            or its ``model`` dict.
        checkpoint (str): The wrapper's checkpoint (``tools/train.py``).
        out_dir (str): Where to write; made only when the check passes.

    Returns:
        dict: The path of each file, keyed ``plain``, ``backbone``, ``heads``.

    Raises:
        ValueError: if the checkpoint holds no CDS-wrapped model.
        RuntimeError: if the plain weights do not load ``strict=True`` into
            the plain model of ``config``. Nothing is written then.
    """
    ckpt = torch.load(checkpoint, map_location='cpu', weights_only=True)
    state_dict = ckpt.get('state_dict', ckpt)
    _, plain = split_state_dict(state_dict)
    check_strict(config, plain)
    backbone = OrderedDict(
        (k, v) for k, v in plain.items() if k.startswith('backbone.'))
    heads = OrderedDict(
        (k, v) for k, v in state_dict.items() if k.startswith(HEADS))
    meta = dict(ckpt.get('meta', {}), cds_mm_export=osp.basename(checkpoint))
    paths = {}
    for name, weights in (('plain', plain), ('backbone', backbone), ('heads',
                                                                     heads)):
        paths[name] = osp.join(out_dir, f'{name}.pth')
        with atomic_write(paths[name], 'wb') as f:
            torch.save(dict(state_dict=weights, meta=meta), f)
    return paths


def check_strict(config: Union[str, dict], plain: Dict[str,
                                                       torch.Tensor]) -> None:
    """Build the plain inner model of ``config`` (a CDS config file or its
    ``model`` dict) and load ``plain`` into it with ``strict=True`` (raises
    ``RuntimeError`` naming the keys)."""
    from mmengine.config import Config
    from mmengine.registry import MODELS, DefaultScope

    cfg = Config.fromfile(config) if isinstance(config, str) else Config(
        dict(model=config))
    key = next((k for k in SCOPES if k in cfg.model), None)
    if key is None:
        raise ValueError(
            f'{config}: model has neither classifier= nor detector=')
    # the config's own scope, whatever an earlier build in this process left
    with DefaultScope.overwrite_default_scope(
            cfg.get('default_scope', SCOPES[key])):
        model = MODELS.build(cfg.model[key])
    model.load_state_dict(plain, strict=True)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        'config', help='the CDS config the checkpoint came from')
    parser.add_argument(
        'checkpoint', help='checkpoint saved by tools/train.py')
    parser.add_argument('--out-dir', required=True, help='where to write')
    return parser.parse_args()


def main():
    args = parse_args()
    paths = export(args.config, args.checkpoint, args.out_dir)
    print(f'plain model (strict load checked): {paths["plain"]}')
    print(f'backbone only (prefix "backbone."): {paths["backbone"]}')
    print('CDS heads only (a distilled-CDS teacher needs them): '
          f'{paths["heads"]}')


if __name__ == '__main__':
    main()
