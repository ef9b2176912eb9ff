"""Train-step time and peak memory of CDS vs the plain model and vs the
two-view floor; inference time of the export; prints one table and writes
``benchmarks/results/train_step_cost.json``.

Everything timed runs in one process and the variants of a group take turns
every round (the order flips each round), so machine noise is shared; each
number is the median over ``--rounds`` steps after ``--warmup`` untimed ones,
on fixed random data. Each group has three reference variants:

- ``baseline``: the plain model (``mode='off'``) on view 1;
- ``floor``: the cost of any two-view method, the floor under CDS: the same
  step plus view 2 through exactly the modules CDS runs it through (for the
  classifier the backbone up to the last tapped stage, for the detector
  backbone + neck), backpropagated through (a zero-weighted mean of its
  outputs joins the loss), with no taps, heads or contrastive loss;
- ``cds``: the shipped CDS config.

The groups:

- classification: the Fashion-MNIST demo config (ResNet-18, CIFAR stem, 1/4
  width, the paper's SepConv heads on 4 stages), batch 128 at 28x28, a full
  ``train_step`` (data preprocessor, ``loss()``, backward, SGD update); also
  ``cds_mlp`` (MLP heads), ``cds_cp`` (SepConv heads with ``with_cp``: their
  activations recomputed in backward), DSN, the authors' joint 2N batch and
  the cheaper variants ``view2_scale=0.5``, ``cds_interval=2`` (timed over 2
  steps, so one with and one without the contrastive term) and 2 taps
  (layer3, 4);
- detection: Faster R-CNN R50-FPN of ``configs/cds_detection/``
  (``init_cfg=None``), batch 2 at ``--det-size``, 3 random boxes per image;
  also the image-level head without its 3x3 conv (each FPN level pooled,
  then the MLP), the naive alternative that runs ``detector.loss`` on both
  views, and image + instance-level CDS (only with ``--variants``);
- inference: the wrapper's ``predict()``, the model exported by
  ``tools/export_plain.py`` (``strict=True``) and the plain upstream model,
  through ``test_step``.

Peak memory and FLOPs run each training variant in its own subprocess: the
peak RSS over a few steps minus the RSS right before the first step, or
``torch.cuda.max_memory_allocated`` minus the memory allocated before it on a
GPU, then the FLOPs of one more step (``torch.utils.flop_counter``:
convolutions and matrix products, forward and backward), which show the
arithmetic a variant adds apart from how fast it runs. The peak is ``VmHWM``
of ``/proc/self/status``, reset by ``/proc/self/clear_refs`` before the first
step; ``ru_maxrss`` cannot be used: Linux keeps in it the high-water mark of
the address space that ``exec`` replaced, i.e. this (large) parent's.

``--profile cls/cds`` prints the torch.profiler table of a few steps of one
variant instead (operators by self CPU time).

    python benchmarks/train_step_cost.py                       # README table
    python benchmarks/train_step_cost.py --skip-det --out ''   # quick look
    python benchmarks/train_step_cost.py --profile cls/cds
"""
import argparse
import copy
import datetime
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
import cds_mm  # noqa: F401  (registries)
import cds_mm.compat  # noqa: F401  (opt-in stack fixes)
from benchmarks.common import git_commit
from benchmarks.make_readme_tables import render_train_step_cost
from cds_mm.utils import atomic_write

MEMORY_STEPS = 3  # the optimizer state appears in the first step
RESULTS = osp.join('benchmarks', 'results', 'train_step_cost.json')
CLS_CONFIG = 'configs/demo/resnet18-w16_cds_1xb128_fashionmnist.py'
CLS_SIZE = 28  # the demo config's training crop
# the image-level head on P2-P5 (the COCO default)
DET_CONFIG = 'configs/cds_detection/faster-rcnn_r50_fpn_cds_1x_coco.py'
# both heads, the instance-level one on P2-P3 as measured
DET_INS_CONFIG = \
    'configs/cds_detection/faster-rcnn_r50_fpn_cds-img-ins_1x_coco.py'
INS_P2_P3 = dict(
    taps=['neck.fpn_convs.0', 'neck.fpn_convs.1'], in_channels=[256, 256])
MLP_HEAD = dict(projector=dict(type='MLPProjector'))
CP_HEAD = dict(projector=dict(type='SepConvProjector', with_cp=True))
# the FPN head without its 3x3 conv: each level pooled, then the MLP
POOL_HEAD = dict(projector=dict(num_convs=0))
# name -> (label, config, model changes, step); step: 'train' (the model's
# train_step), 'floor', 'naive', or an int k: k train steps per timed call
CLS_TRAIN = {
    'baseline':
    ('baseline (`mode=off`)', CLS_CONFIG, dict(mode='off'), 'train'),
    'floor':
    ('two-view floor (view 2 through the backbone)', CLS_CONFIG, {}, 'floor'),
    'cds': ('CDS, SepConv heads (the paper)', CLS_CONFIG, {}, 'train'),
    'cds_mlp':
    ('CDS, MLP heads', CLS_CONFIG, dict(cds_head=MLP_HEAD), 'train'),
    'cds_cp': ('CDS, SepConv heads, `projector.with_cp=True`', CLS_CONFIG,
               dict(cds_head=CP_HEAD), 'train'),
    'dsn': ('DSN (`mode=dsn`)', CLS_CONFIG, dict(mode='dsn'), 'train'),
    'cds_joint': ('CDS, `joint_batch=True` (the authors\' 2N batch)',
                  CLS_CONFIG, dict(joint_batch=True), 'train'),
    'cds_view2_half': ('CDS, `view2_scale=0.5`', CLS_CONFIG,
                       dict(view2_scale=0.5), 'train'),
    'cds_every2': ('CDS, `cds_interval=2`', CLS_CONFIG, dict(cds_interval=2),
                   2),
    'cds_2taps':
    ('CDS, 2 taps (layer3, layer4)', CLS_CONFIG,
     dict(cds_head=dict(taps=['backbone.layer3', 'backbone.layer4'])),
     'train'),
}
DET_TRAIN = {
    'baseline':
    ('baseline (`mode=off`)', DET_CONFIG, dict(mode='off'), 'train'),
    'floor': ('two-view floor (view 2 through backbone + neck)', DET_CONFIG,
              {}, 'floor'),
    'cds': ('CDS image-level (P2-P5)', DET_CONFIG, {}, 'train'),
    'cds_pool': ('CDS image-level, pooled levels (`projector.num_convs=0`)',
                 DET_CONFIG, dict(cds_head=POOL_HEAD), 'train'),
    'cds_ins': ('CDS image + instance', DET_INS_CONFIG,
                dict(instance_head=INS_P2_P3), 'train'),
    'naive': ('naive: `detector.loss` on both views', DET_CONFIG,
              dict(mode='off'), 'naive'),
}
GROUPS = {'cls': CLS_TRAIN, 'det': DET_TRAIN}
DEFAULT_VARIANTS = [f'cls/{v}' for v in CLS_TRAIN
                    ] + [f'det/{v}' for v in DET_TRAIN if v != 'cds_ins']


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
    for key, value in copy.deepcopy(changes).items():
        if isinstance(value, dict):  # part of a sub-config, e.g. cds_head
            model[key].update(value)
        else:
            model[key] = value
    if det:
        model.detector.backbone.init_cfg = None  # nothing downloads
    return model, cfg.optim_wrapper


def variant(name):
    """``(group, label, config, changes, step)`` of ``'cls/cds'`` etc."""
    group, _, key = name.partition('/')
    if group not in GROUPS or key not in GROUPS[group]:
        known = [f'{g}/{k}' for g, v in GROUPS.items() for k in v]
        raise SystemExit(f'unknown variant {name!r}; known: {known}')
    return (group, ) + GROUPS[group][key]


def build_step(name, device):
    """``(step, k)``: ``step(batches)`` runs one training step per batch of
    the variant ``name``; a timed call gets ``k`` batches."""
    from mmengine.optim import build_optim_wrapper
    group, _, config, changes, kind = variant(name)
    det = group == 'det'
    model_dict, optim = model_cfg(config, changes, det)
    model = registry(det).build(model_dict).to(device).train()
    optim_wrapper = build_optim_wrapper(model, optim)
    if kind in ('floor', 'naive'):
        loss = {
            'naive': naive_loss,
            'floor': det_floor_loss if det else cls_floor_loss
        }[kind]
        if kind == 'floor' and not det:
            check_cls_floor(model)

        def one(data):
            manual_step(model, data, optim_wrapper, loss)
    else:

        def one(data):
            model.train_step(data, optim_wrapper)

    def step(batches):
        for data in batches:
            one(data)

    return step, kind if isinstance(kind, int) else 1


def manual_step(model, data, optim_wrapper, loss):
    """``BaseModel.train_step`` with ``loss(model, inputs, data_samples)`` in
    place of ``model.loss``."""
    with optim_wrapper.optim_context(model):
        data = model.data_preprocessor(data, True)
        losses = loss(model, data['inputs'], data['data_samples'])
    parsed, _ = model.parse_losses(losses)
    optim_wrapper.update_params(parsed)


def cls_floor_loss(model, inputs, samples):
    """The classifier's loss on view 1; view 2 through the backbone, which
    ends at the last tap (:func:`check_cls_floor`), kept in the graph at
    weight 0 so its backward runs too."""
    view1, view2 = inputs
    losses = model.classifier.loss(view1, samples)
    feats2 = model.classifier.backbone(view2)
    losses['loss_floor'] = sum(f.mean() for f in feats2) * 0.
    return losses


def check_cls_floor(model):
    """The backbone ends at the deepest tap, so the floor runs view 2 exactly
    as far as CDS does."""
    last = f'backbone.layer{model.classifier.backbone.num_stages}'
    if model.taps.names[-1] != last:
        raise SystemExit(f'the floor expects the last tap to be the '
                         f'backbone output {last}, got {model.taps.names}')


def det_floor_loss(model, inputs, samples):
    """The detector's losses on view 1; view 2 through backbone (+ neck when
    CDS taps the neck), kept in the graph at weight 0."""
    losses = model.detector.loss(inputs['main'], samples['main'])
    if model._view2_needs_neck:
        feats2 = model.detector.extract_feat(inputs['cds'])
    else:
        feats2 = model.detector.backbone(inputs['cds'])
    losses['loss_floor'] = sum(f.mean() for f in feats2) * 0.
    return losses


def naive_loss(model, inputs, samples):
    """A full second detector forward: the detector's own loss on both views.
    """
    losses = model.detector.loss(inputs['main'], samples['main'])
    view2 = model.detector.loss(inputs['cds'], samples['cds'])
    losses.update({f'{k}_view2': v for k, v in view2.items()})
    return losses


def registry(det):
    from mmdet.registry import MODELS as DET_MODELS
    from mmpretrain.registry import MODELS as CLS_MODELS
    return DET_MODELS if det else CLS_MODELS


def cls_batch(n=128, size=CLS_SIZE, views=2):
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
    """Median seconds per step of each ``runs[name] = (fn, k)``: ``fn`` gets
    ``k`` fresh copies of ``data`` (made before the clock starts) and the
    time is divided by ``k``; the variants take turns each round."""
    names = list(runs)
    times = {name: [] for name in names}
    for r in range(warmup + rounds):
        for name in (names if r % 2 == 0 else names[::-1]):
            fn, k = runs[name]
            batches = [copy.deepcopy(data) for _ in range(k)]
            sync(device)
            start = time.perf_counter()
            fn(batches)
            sync(device)
            if r >= warmup:
                times[name].append((time.perf_counter() - start) / k)
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
        runs = {
            k: (lambda batches, m=m: [m.test_step(b) for b in batches], 1)
            for k, m in models.items()
        }
        times = round_robin(runs, data, args.rounds, args.warmup, args.device)
    return times, same


def _same(a, b):
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    return all(torch.equal(a[k], b[k]) for k in ('bboxes', 'scores', 'labels'))


def batch_of(group, args):
    return det_batch(args.det_size) if group == 'det' else cls_batch()


def memory_and_flops(name, args):
    """``{'peak_mib', 'gflop'}`` of one variant, in a subprocess: the peak
    training memory over ``MEMORY_STEPS`` steps, then the FLOPs of a step."""
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
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _status_kib(field):
    """``VmRSS`` (resident now) or ``VmHWM`` (its high-water mark) in KiB."""
    with open('/proc/self/status') as f:
        return next(
            int(line.split()[1]) for line in f if line.startswith(f'{field}:'))


def measure_memory(name, args):
    """Child side of :func:`memory_and_flops`: print the peak over a few
    steps and the FLOPs of one step as JSON.

    FLOPs are what ``torch.utils.flop_counter`` counts (convolutions and
    matrix products, forward and backward), averaged over the ``k`` steps of
    a timed call; the arithmetic a variant adds, apart from how fast it runs.
    """
    from mmengine.registry import DefaultScope
    from torch.utils.flop_counter import FlopCounterMode
    group = variant(name)[0]
    with DefaultScope.overwrite_default_scope('mmdet' if group ==
                                              'det' else 'mmpretrain'):
        step, k = build_step(name, args.device)
        data = batch_of(group, args)
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
        step(batches)
        if args.device.startswith('cuda'):
            peak = torch.cuda.max_memory_allocated() - before
        else:
            peak = _status_kib('VmHWM') * 1024 - before
        counter = FlopCounterMode(display=False)
        with counter:
            step([copy.deepcopy(data) for _ in range(k)])
    print(
        json.dumps(
            dict(
                variant=name,
                peak_mib=peak / 2**20,
                gflop=counter.get_total_flops() / k / 1e9)))


def profile(name, args):
    """Print torch.profiler's operator table for a few steps of ``name``."""
    from mmengine.registry import DefaultScope
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile
    group = variant(name)[0]
    with DefaultScope.overwrite_default_scope('mmdet' if group ==
                                              'det' else 'mmpretrain'):
        step, k = build_step(name, args.device)
        data = batch_of(group, args)
        for _ in range(args.warmup):
            step([copy.deepcopy(data) for _ in range(k)])
        batches = [copy.deepcopy(data) for _ in range(k * args.rounds)]
        activities = [ProfilerActivity.CPU] + (
            [ProfilerActivity.CUDA] if args.device.startswith('cuda') else [])
        with torch_profile(activities=activities) as prof:
            step(batches)
    sort = 'self_cuda_time_total' if args.device.startswith(
        'cuda') else 'self_cpu_time_total'
    print(f'{name}: {k * args.rounds} steps')
    print(prof.key_averages().table(sort_by=sort, row_limit=args.top))


def run_all(args):
    """Time and measure every variant; the results as a JSON-able dict."""
    from mmengine.registry import DefaultScope
    names = args.variants.split(',') if args.variants else DEFAULT_VARIANTS
    if args.skip_det:
        names = [n for n in names if not n.startswith('det/')]
    for name in names:
        variant(name)
    results = dict(meta={})
    for group in GROUPS:
        mine = [n for n in names if n.startswith(f'{group}/')]
        if not mine:
            continue
        with DefaultScope.overwrite_default_scope('mmdet' if group ==
                                                  'det' else 'mmpretrain'):
            times = time_training(mine, batch_of(group, args), args)
        results[group] = {}
        for n in mine:
            measured = memory_and_flops(n, args)
            results[group][n.split('/')[1]] = {
                'label': variant(n)[1],
                'median_ms': round(1000 * times[n], 2),
                args.memory_key: round(measured['peak_mib'], 1),
                'gflop': round(measured['gflop'], 3)
            }
    if not args.skip_inference:
        results['inference'] = {}
        for group in [g for g in GROUPS if g in results]:
            det = group == 'det'
            data = det_batch(
                args.det_size, branches=False) if det else cls_batch(views=1)
            times, same = time_inference(det, data, args)
            results['inference'][group] = dict(
                {
                    k: dict(median_ms=round(1000 * t, 2))
                    for k, t in times.items()
                },
                identical_outputs=same)
    return results


def describe(args, seconds, commit):
    """The ``meta`` block: machine, settings, commit."""
    dev = torch.cuda.get_device_name() if args.device.startswith(
        'cuda') else platform.processor() or 'cpu'
    return dict(
        date=datetime.date.today().isoformat(),
        git_commit=commit,
        machine=f'{os.cpu_count()} CPUs, {dev}',
        torch=torch.__version__,
        threads=torch.get_num_threads(),
        device=args.device,
        rounds=args.rounds,
        warmup=args.warmup,
        cls=f'ResNet-18 w16 (demo config), batch 128 at {CLS_SIZE}x'
        f'{CLS_SIZE}',
        det=f'Faster R-CNN R50-FPN, batch 2 at {args.det_size}x'
        f'{args.det_size}, 3 boxes per image',
        memory_key=args.memory_key,
        note=args.note,
        seconds=round(seconds))


def print_table(results):
    print('\n' + render_train_step_cost(results))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        '--rounds', type=int, default=5, help='timed steps per variant')
    parser.add_argument(
        '--warmup', type=int, default=1, help='untimed steps per variant')
    parser.add_argument(
        '--det-size', type=int, default=512, help='detection image side')
    parser.add_argument(
        '--variants',
        help='comma-separated group/name list, e.g. cls/cds,det/cds_ins '
        f'(default: {",".join(DEFAULT_VARIANTS)})')
    parser.add_argument(
        '--skip-det', action='store_true', help='classification only')
    parser.add_argument(
        '--skip-inference', action='store_true', help='no inference timing')
    parser.add_argument(
        '--out',
        default=RESULTS,
        help="JSON to write, relative to the repo ('' for none)")
    parser.add_argument(
        '--profile', metavar='VARIANT', help='profile one variant instead')
    parser.add_argument(
        '--top', type=int, default=25, help='operators in --profile table')
    parser.add_argument(
        '--note', default='', help='a sentence for the README table')
    parser.add_argument('--device', default='cpu', help="'cpu' or 'cuda'")
    # internal: child process
    parser.add_argument('--memory-of', help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.device.startswith('cuda') and not torch.cuda.is_available():
        raise SystemExit('--device cuda given but torch sees no GPU')
    args.memory_key = 'peak_cuda_mib' if args.device.startswith(
        'cuda') else 'peak_rss_mib'
    if args.memory_of:
        return measure_memory(args.memory_of, args)
    if args.profile:
        return profile(args.profile, args)
    start, commit = time.time(), git_commit()  # the code that is measured
    results = run_all(args)
    results['meta'] = describe(args, time.time() - start, commit)
    print_table(results)
    if args.out:
        with atomic_write(osp.join(REPO, args.out)) as f:
            json.dump(results, f, indent=1)
            f.write('\n')
        print(f'wrote {args.out}')


if __name__ == '__main__':
    main()
