"""Train-step time, inference time and peak memory of CDS vs the plain model;
prints one table.

Everything timed runs in one process and the variants of a group take turns
every round (the order flips each round), so machine noise is shared; each
number is the median over ``--rounds`` steps after ``--warmup`` untimed ones,
on fixed random data:

- classification: the Fashion-MNIST demo config (ResNet-18, CIFAR stem, 1/4
  width), batch 128 at 32x32, a full ``train_step`` (data preprocessor,
  ``loss()``, backward, SGD update) for ``model.mode`` = off / dsn / cds, and
  cds with ``joint_batch=True`` (the authors' 2N batch);
- detection: Faster R-CNN R50-FPN of ``configs/cds_detection/``
  (``init_cfg=None``), batch 2 at ``--det-size``, a few random boxes per image:
  ``mode='off'``, image-level CDS, image + instance-level CDS, and the naive
  alternative that runs ``detector.loss`` on both views;
- inference: the wrapper's ``predict()``, the model exported by
  ``tools/export_plain.py`` (``strict=True``) and the plain upstream model,
  through ``test_step``.

Peak memory runs each training variant in its own subprocess: the peak RSS over
a few steps minus the RSS right before the first step, or
``torch.cuda.max_memory_allocated`` minus the memory allocated before it on a
GPU. The peak is ``VmHWM`` of ``/proc/self/status``, reset by
``/proc/self/clear_refs`` before the first step; ``ru_maxrss`` cannot be used:
Linux keeps in it the high-water mark of the address space that ``exec``
replaced, i.e. this (large) parent's.

    python benchmarks/train_step_cost.py --rounds 10 --warmup 2 --det-size 512
"""
import argparse
import copy
import importlib.util
import json
import os
import os.path as osp
import platform
import statistics
import subprocess
import sys
import time

import torch

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, REPO)
import cds_mm  # noqa: E402,F401  (registries)
import cds_mm.compat  # noqa: E402,F401  (opt-in stack fixes)

MEMORY_STEPS = 3  # the optimizer state appears in the first step
CLS_CONFIG = 'configs/demo/resnet18-w16_cds_1xb128_fashionmnist.py'
DET_CONFIG = 'configs/cds_detection/faster-rcnn_r50_fpn_cds_1x_coco.py'
DET_INS_CONFIG = 'configs/cds_detection/faster-rcnn_r50_fpn_cds-ins_1x_coco.py'
# name -> (label, config, cfg changes); the first of each group is the baseline
# of its ratios
CLS_TRAIN = {
    'cls/off': ('baseline (mode=off)', CLS_CONFIG, dict(mode='off')),
    'cls/dsn': ('DSN (mode=dsn)', CLS_CONFIG, dict(mode='dsn')),
    'cls/cds': ('CDS (mode=cds)', CLS_CONFIG, dict(mode='cds')),
    'cls/cds-joint':
    ('CDS, joint_batch=True', CLS_CONFIG, dict(mode='cds', joint_batch=True))
}
DET_TRAIN = {
    'det/off': ('baseline (mode=off)', DET_CONFIG, dict(mode='off')),
    'det/cds': ('CDS image-level', DET_CONFIG, {}),
    'det/ins': ('CDS image + instance', DET_INS_CONFIG, {}),
    'det/naive':
    ('naive: detector.loss on both views', DET_CONFIG, dict(mode='off'))
}


def load_export_tool():
    spec = importlib.util.spec_from_file_location(
        'export_plain', osp.join(REPO, 'tools', 'export_plain.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def model_cfg(config, changes, det):
    from mmengine.config import Config
    cfg = Config.fromfile(osp.join(REPO, config))
    model = copy.deepcopy(cfg.model)
    model.update(changes)
    if det:
        model.detector.backbone.init_cfg = None  # nothing downloads
    return model, cfg.optim_wrapper


def build_step(name, device):
    """``step(data)``: one full training step of the variant ``name``."""
    from mmengine.optim import build_optim_wrapper
    det = name.startswith('det/')
    _, config, changes = (DET_TRAIN if det else CLS_TRAIN)[name]
    model_dict, optim = model_cfg(config, changes, det)
    model = registry(det).build(model_dict).to(device).train()
    optim_wrapper = build_optim_wrapper(model, optim)
    if name == 'det/naive':
        return lambda data: naive_step(model, data, optim_wrapper)
    return lambda data: model.train_step(data, optim_wrapper)


def naive_step(model, data, optim_wrapper):
    """A full second detector forward: the detector's own loss on both views.
    """
    with optim_wrapper.optim_context(model):
        data = model.data_preprocessor(data, True)
        inputs, samples = data['inputs'], data['data_samples']
        losses = model.detector.loss(inputs['main'], samples['main'])
        view2 = model.detector.loss(inputs['cds'], samples['cds'])
        losses.update({f'{k}_view2': v for k, v in view2.items()})
    parsed, _ = model.parse_losses(losses)
    optim_wrapper.update_params(parsed)


def registry(det):
    from mmdet.registry import MODELS as DET_MODELS
    from mmpretrain.registry import MODELS as CLS_MODELS
    return DET_MODELS if det else CLS_MODELS


def cls_batch(n=128, size=32, views=2):
    from mmpretrain.structures import DataSample
    g = torch.Generator().manual_seed(0)
    imgs = [
        torch.randint(
            0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8)
        for _ in range(views)
    ]
    labels = torch.randint(0, 10, (n, ), generator=g)
    samples = [DataSample().set_gt_label(int(y)) for y in labels]
    return dict(inputs=imgs if views > 1 else imgs[0], data_samples=samples)


def det_batch(size, n=2, branches=True):
    from mmdet.testing import demo_mm_inputs
    data = demo_mm_inputs(
        batch_size=n,
        image_shapes=(3, size, size),
        num_items=[3] * n,
        num_classes=80)
    if not branches:
        return data
    view2 = copy.deepcopy(data)
    # photometric only: same boxes
    view2['inputs'] = [255 - img for img in view2['inputs']]
    return dict(
        inputs=dict(main=data['inputs'], cds=view2['inputs']),
        data_samples=dict(
            main=data['data_samples'], cds=view2['data_samples']))


def sync(device):
    if device.startswith('cuda'):
        torch.cuda.synchronize()


def round_robin(runs, data, rounds, warmup, device):
    """Median seconds per call of each ``runs[name](data_copy)``, taking turns
    each round."""
    names = list(runs)
    for _ in range(warmup):
        for name in names:
            runs[name](copy.deepcopy(data))
    times = {name: [] for name in names}
    for r in range(rounds):
        for name in (names if r % 2 == 0 else names[::-1]):
            batch = copy.deepcopy(data)
            sync(device)
            start = time.perf_counter()
            runs[name](batch)
            sync(device)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def time_training(names, data, args):
    runs = {name: build_step(name, args.device) for name in names}
    return round_robin(runs, data, args.rounds, args.warmup, args.device)


def time_inference(det, data, args):
    """Median test_step time of the wrapper, its export and the plain upstream
    model."""
    from mmengine.registry import DefaultScope
    export_tool = load_export_tool()
    build = registry(det).build
    model_dict, _ = model_cfg(DET_CONFIG if det else CLS_CONFIG, {}, det)
    inner = model_dict['detector' if det else 'classifier']
    wrapper = build(model_dict).to(args.device).eval()
    _, plain_sd = export_tool.split_state_dict(wrapper.state_dict())
    exported = build(copy.deepcopy(inner)).to(args.device).eval()
    exported.load_state_dict(plain_sd, strict=True)
    upstream = build(copy.deepcopy(inner)).to(args.device).eval()
    models = {'upstream': upstream, 'export': exported, 'wrapper': wrapper}
    scope = 'mmdet' if det else 'mmpretrain'
    with torch.no_grad(), DefaultScope.overwrite_default_scope(scope):
        outs = [m.test_step(copy.deepcopy(data)) for m in (wrapper, exported)]
        key = 'pred_instances' if det else 'pred_score'
        same = all(
            _same(getattr(a, key), getattr(b, key)) for a, b in zip(*outs))
        times = round_robin({k: m.test_step
                             for k, m in models.items()}, data, args.rounds,
                            args.warmup, args.device)
    return times, same


def _same(a, b):
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    return all(torch.equal(a[k], b[k]) for k in ('bboxes', 'scores', 'labels'))


def peak_memory(name, args):
    """Peak training memory (MiB) of one variant over ``MEMORY_STEPS`` steps,
    in a subprocess."""
    cmd = [
        sys.executable,
        osp.abspath(__file__), '--memory-of', name, '--device', args.device,
        '--det-size',
        str(args.det_size)
    ]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(
            f'memory run of {name} failed:\n{proc.stderr[-3000:]}')
    return json.loads(proc.stdout.strip().splitlines()[-1])['peak_mib']


def _status_kib(field):
    """``VmRSS`` (resident now) or ``VmHWM`` (its high-water mark) in KiB."""
    with open('/proc/self/status') as f:
        return next(
            int(line.split()[1]) for line in f if line.startswith(f'{field}:'))


def measure_memory(name, args):
    """Child side of :func:`peak_memory`: print the peak over a few steps as
    JSON."""
    from mmengine.registry import DefaultScope
    det = name.startswith('det/')
    with DefaultScope.overwrite_default_scope(
            'mmdet' if det else 'mmpretrain'):
        step = build_step(name, args.device)
        data = det_batch(args.det_size) if det else cls_batch()
        batches = [copy.deepcopy(data) for _ in range(MEMORY_STEPS)]
        if args.device.startswith('cuda'):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            before = torch.cuda.memory_allocated()
        else:
            # reset the RSS high-water mark, so building the model does not
            # count
            try:
                with open('/proc/self/clear_refs', 'w') as f:
                    f.write('5')
            except OSError:
                pass
            before = _status_kib('VmRSS') * 1024
        for batch in batches:
            step(batch)
        if args.device.startswith('cuda'):
            peak = torch.cuda.max_memory_allocated() - before
        else:
            peak = _status_kib('VmHWM') * 1024 - before
    print(json.dumps(dict(variant=name, peak_mib=peak / 2**20)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        '--rounds', type=int, default=10, help='timed steps per variant')
    parser.add_argument(
        '--warmup', type=int, default=2, help='untimed steps per variant')
    parser.add_argument(
        '--det-size', type=int, default=512, help='detection image side')
    parser.add_argument(
        '--skip-det', action='store_true', help='classification only')
    parser.add_argument('--device', default='cpu', help="'cpu' or 'cuda'")
    # internal: child process
    parser.add_argument('--memory-of', help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.device.startswith('cuda') and not torch.cuda.is_available():
        raise SystemExit('--device cuda given but torch sees no GPU')
    if args.memory_of:
        return measure_memory(args.memory_of, args)
    from mmengine.registry import DefaultScope

    start = time.time()
    groups = [('cls', CLS_TRAIN, cls_batch())]
    if not args.skip_det:
        groups.append(('det', DET_TRAIN, det_batch(args.det_size)))
    rows = []
    for kind, variants, data in groups:
        with DefaultScope.overwrite_default_scope('mmdet' if kind ==
                                                  'det' else 'mmpretrain'):
            times = time_training(list(variants), data, args)
        mems = {name: peak_memory(name, args) for name in variants}
        base = next(iter(variants))
        for name, (label, _, _) in variants.items():
            rows.append((kind, 'train step', label, times[name],
                         times[name] / times[base], mems[name],
                         mems[name] / mems[base]))
    checks = []
    for kind in [g[0] for g in groups]:
        det = kind == 'det'
        data = det_batch(
            args.det_size, branches=False) if det else cls_batch(views=1)
        times, same = time_inference(det, data, args)
        checks.append(
            f'{kind}: export and wrapper predict() give identical outputs: '
            f'{same}')
        for name, label in (('upstream', 'plain upstream model'),
                            ('export', 'export_plain.py model (strict load)'),
                            ('wrapper', 'CDS wrapper predict()')):
            rows.append((kind, 'inference', label, times[name],
                         times[name] / times['upstream'], None, None))

    dev = torch.cuda.get_device_name() if args.device.startswith(
        'cuda') else platform.processor()
    print(f'\nMachine: {os.cpu_count()} CPUs, torch {torch.__version__} '
          f'({torch.get_num_threads()} threads), device {args.device} '
          f'({dev or "cpu"}); '
          f'{args.rounds} rounds after {args.warmup} warm-up, median; '
          f'total {time.time() - start:.0f} s')
    det_line = '' if args.skip_det else (
        f' det: Faster R-CNN R50-FPN, batch 2 at {args.det_size}'
        f'x{args.det_size}, 3 boxes per image.')
    print(f'cls: ResNet-18 w16 (demo config), batch 128 at 32x32.{det_line}')
    mem_kind = 'CUDA max allocated' if args.device.startswith(
        'cuda') else 'peak RSS'
    print(f'| model | step | variant | median (ms) | time ratio | {mem_kind} '
          '(MiB) | mem ratio |')
    print('|---|---|---|---|---|---|---|')
    for kind, step, label, sec, ratio, mem, mem_ratio in rows:
        mem_cells = ('-', '-') if mem is None else (f'{mem:.0f}',
                                                    f'{mem_ratio:.2f}')
        print(
            f'| {kind} | {step} | {label} | {1000 * sec:.1f} | {ratio:.2f} | '
            f'{mem_cells[0]} | {mem_cells[1]} |')
    print('Time ratios: vs the baseline (train) or the plain upstream model '
          '(inference).')
    for line in checks:
        print(line)


if __name__ == '__main__':
    main()
