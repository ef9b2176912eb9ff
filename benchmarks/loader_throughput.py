"""Data-loader throughput of the two-view pipeline, with view 2's colour per
sample in the loader or on the batch (``BatchPhotometric``), and the
end-to-end train step time; prints one table and writes
``benchmarks/results/loader_throughput.json``.

The Fashion-MNIST demo config (``configs/demo/resnet18-w16_cds_1xb128_
fashionmnist.py``: batch 128 at 28x28, ResNet-18 at 1/4 width, CDS on 4
stages), three train loaders:

- ``1 view``: the task view only (crop + flip), as a plain recipe loads;
- ``2 views``: the shipped CDS loader, view 2's colour recipe (jitter p=0.8,
  grayscale p=0.2) run per sample in the loader;
- ``2 views + batch colour``: view 2 keeps its geometry in the loader; the
  colour recipe runs in ``MultiViewClsDataPreprocessor`` via
  ``view2_batch_augments`` on the model's device.

Loader throughput is one worker's work (dataset read, pipeline, collate) run
in this process (``num_workers=0``): samples per second, the median of
``--rounds`` passes of ``--batches`` batches after one untimed batch.
The colour work itself is also timed on one collated view 2: the per-sample
transforms as a worker runs them, and ``BatchPhotometric`` on ``--device``
(on a GPU it leaves the loader; on a CPU it moves into the training
process). End-to-end: the mean time of ``next(loader)`` +
``train_step`` over ``--steps`` steps after ``--warmup`` (worker start-up
excluded), with ``num_workers`` 1 and 2 and persistent workers.

    CDS_DATA_ROOT=DIR python benchmarks/loader_throughput.py
    python benchmarks/loader_throughput.py --data-root DIR --device cuda
"""
import argparse
import copy
import json
import os
import os.path as osp
import platform
import statistics
import sys
import time

import torch

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, REPO)
import cds_mm  # noqa: F401  (registries)
import cds_mm.compat  # noqa: F401  (opt-in stack fixes)
from cds_mm.utils import atomic_write

CONFIG = 'configs/demo/resnet18-w16_cds_1xb128_fashionmnist.py'
COLOUR = 'configs/_base_/cds/contrast_colour.py'
VARIANTS = {
    '1view': '1 view',
    '2views': '2 views (colour per sample)',
    '2views_batch': '2 views + batch colour',
}


def load_cfg(data_root):
    from mmengine.config import Config

    from cds_mm.datasets.data_root import set_data_root
    cfg = Config.fromfile(osp.join(REPO, CONFIG))
    if data_root:
        set_data_root(cfg, data_root)
    return cfg


def variant_cfg(cfg, name):
    """(train_dataloader, model) configs of one variant."""
    from mmengine.config import Config
    colour = Config.fromfile(osp.join(REPO, COLOUR)).contrast_colour
    loader = copy.deepcopy(cfg.train_dataloader)
    model = copy.deepcopy(cfg.model)
    multi_view = loader.dataset.pipeline[0]
    task_view, contrast_view = multi_view.transforms
    if name == '1view':
        loader.dataset.pipeline = [
            dict(type='MultiView', num_views=1, transforms=[task_view]),
            loader.dataset.pipeline[1]
        ]
    elif name == '2views_batch':
        multi_view.transforms[1] = [
            t for t in contrast_view if t not in colour
        ]
        assert len(multi_view.transforms[1]) == len(contrast_view) - 2
        model.data_preprocessor = dict(
            type='MultiViewClsDataPreprocessor',
            data_preprocessor=model.classifier.data_preprocessor,
            view2_batch_augments=dict(
                type='BatchPhotometric', transforms=colour))
    return loader, model


def build_loader(loader_cfg, workers, seed=0):
    from mmengine.registry import DefaultScope
    from mmengine.runner import Runner
    loader_cfg = copy.deepcopy(loader_cfg)
    loader_cfg.update(num_workers=workers, persistent_workers=workers > 0)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return Runner.build_dataloader(loader_cfg, seed=seed)


def loader_rate(loader_cfg, batches, rounds):
    """Samples per second of one worker (in this process)."""
    loader = build_loader(loader_cfg, 0)
    size = loader.batch_size
    rates = []
    it = iter(loader)
    next(it)
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(batches):
            try:
                next(it)
            except StopIteration:
                it = iter(loader)
                next(it)
        rates.append(batches * size / (time.perf_counter() - start))
    return statistics.median(rates)


def colour_ms(loader_cfg, model_cfg, device, repeats=10):
    """View 2's colour recipe on one collated batch, in ms: per sample (the
    mmcv/mmpretrain transforms, as a loader worker runs them) and as the
    batch op on ``device``."""
    from mmcv.transforms import Compose
    from mmengine.registry import MODELS, DefaultScope
    colour = model_cfg.data_preprocessor.view2_batch_augments
    aug = MODELS.build(colour)
    batch = next(iter(build_loader(loader_cfg, 0)))
    view2 = torch.stack(batch['inputs'][1])
    images = [img.permute(1, 2, 0).numpy().copy() for img in view2]
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        pipeline = Compose(copy.deepcopy(colour.transforms))
    view2 = view2.to(device)

    def timed(fn):
        times = []
        for _ in range(repeats + 2):
            if device.startswith('cuda'):
                torch.cuda.synchronize()
            start = time.perf_counter()
            fn()
            if device.startswith('cuda'):
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        return 1000 * statistics.median(times[2:])

    return dict(
        colour_ms_per_sample=timed(
            lambda: [pipeline(dict(img=img)) for img in images]),
        colour_ms_batch_op=timed(lambda: aug(view2)))


def step_time(loader_cfg, model_cfg, optim_cfg, workers, device, warmup,
              steps):
    """Mean seconds of next(loader) + train_step."""
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(copy.deepcopy(model_cfg)).to(device).train()
    optim = build_optim_wrapper(model, copy.deepcopy(optim_cfg))
    loader = build_loader(loader_cfg, workers)
    it = iter(loader)
    for _ in range(warmup):
        model.train_step(next(it), optim)
    start = time.perf_counter()
    for _ in range(steps):
        model.train_step(next(it), optim)
    if device.startswith('cuda'):
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / steps
    del it, loader  # stop the workers
    return seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        '--data-root',
        help='Fashion-MNIST folder (default: CDS_DATA_ROOT, as the config)')
    parser.add_argument('--device', default='cpu', help="'cpu' or 'cuda'")
    parser.add_argument('--batches', type=int, default=8)
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--steps', type=int, default=10)
    parser.add_argument(
        '--out',
        default=osp.join(REPO, 'benchmarks', 'results',
                         'loader_throughput.json'),
        help="JSON file to write ('' for none)")
    args = parser.parse_args()
    cfg = load_cfg(args.data_root)
    load_before = os.getloadavg()
    loader_results, e2e = {}, {}
    for name in VARIANTS:
        print(f'{name}: loader ...', file=sys.stderr, flush=True)
        loader_cfg, model_cfg = variant_cfg(cfg, name)
        row = dict(
            samples_per_s_per_worker=loader_rate(loader_cfg, args.batches,
                                                 args.rounds))
        if name == '2views_batch':
            row.update(colour_ms(loader_cfg, model_cfg, args.device))
        loader_results[name] = row
        if name == '1view':
            continue
        print(f'{name}: train steps ...', file=sys.stderr, flush=True)
        e2e[name] = {
            str(w): step_time(loader_cfg, model_cfg, cfg.optim_wrapper, w,
                              args.device, args.warmup, args.steps)
            for w in (1, 2)
        }
    result = dict(
        config=CONFIG,
        batch_size=cfg.train_dataloader.batch_size,
        device=args.device,
        machine=f'{os.cpu_count()} CPUs, {platform.processor() or "?"}, '
        f'torch {torch.__version__}, {torch.get_num_threads()} threads',
        load_avg_1min=[load_before[0], os.getloadavg()[0]],
        loader=loader_results,
        step_s=e2e,
        # a copy: no machine paths in the JSON, args itself stays whole
        args={
            k: v
            for k, v in vars(args).items() if k not in ('data_root', 'out')
        })
    print_table(result)
    if args.out:
        os.makedirs(osp.dirname(args.out), exist_ok=True)
        with atomic_write(args.out) as f:
            json.dump(result, f, indent=2)
            f.write('\n')


def print_table(result):
    print(f'\n{result["config"]}, batch {result["batch_size"]}, device '
          f'{result["device"]}; {result["machine"]}; load (1 min) '
          f'{result["load_avg_1min"][0]:.1f} -> '
          f'{result["load_avg_1min"][1]:.1f}')
    head = ('| loader | samples/s per worker | step s, 1 worker | '
            'step s, 2 workers |')
    print(head)
    print('|' + '---|' * 4)
    for name, label in VARIANTS.items():
        row = result['loader'][name]
        steps = result['step_s'].get(name, {})
        cells = [
            label, f'{row["samples_per_s_per_worker"]:.0f}',
            *(f'{steps[w]:.3f}' if w in steps else '-' for w in ('1', '2'))
        ]
        print('| ' + ' | '.join(cells) + ' |')
    row = result['loader']['2views_batch']
    print(f'\nview 2 colour on one batch: {row["colour_ms_per_sample"]:.1f} '
          f'ms per sample (loader transforms), {row["colour_ms_batch_op"]:.1f}'
          f' ms as BatchPhotometric on {result["device"]}')


if __name__ == '__main__':
    main()
