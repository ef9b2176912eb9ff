"""Gradient norm that each loss term of the CDS detector sends into the shared
backbone + neck, on a dense one-class set; writes one JSON and one plot.

The demo's tiny CDS Faster R-CNN (image-level CDS on P2-P5, instance-level on
P2) trains on the generated dense set (15-30 small objects of one class per
image, made by ``cds_mm.datasets.make_dense_coco``) in a plain mmengine
``Runner``, so the schedules, CDSWeightHook, gradient clipping and
CheckFiniteLossHook act as in ``tools/train.py``. Every ``--every`` iterations,
before the backward pass, ``torch.autograd.grad`` of each loss term (as
weighted in the total loss: ``loss_cls``, ``loss_bbox``, the RPN terms, each
``loss_cds_s<i>`` and ``loss_cds_inst_s<i>``) with respect to the backbone and
neck parameters gives that term's L2 gradient norm there; so does the total.
Every iteration the loss values, the mean norm of the instance projections
before L2 normalisation and their mean pairwise cosine (1 = collapsed) are
logged. A run whose loss turns non-finite stops there (CheckFiniteLossHook)
and is recorded as diverged.

Variants (``--variants``):

- ``baseline``: ``model.mode='off'``, the detector's own terms for reference.
- ``supcon-1cls``: the setup of issue #13: SupCon over box classes on a single
  class (the instance head's SimCLR fallback switched off), no CDS warm-up, no
  clipping.
- ``supcon-1cls+warmup``: the same with the CDS weight warm-up.
- ``supcon-1cls+warmup+clip``: the same with the warm-up and
  ``clip_grad=dict(max_norm=35)`` (``--clip-norm``; 35 is mmdet's RetinaNet
  setting).
- ``simclr-boxes``: SimCLR over boxes (the head's one-class fallback), no
  warm-up.
- ``shipped``: the dense CDS config's instance head and hooks as shipped
  (SimCLR fallback for one-class batches, CDS warm-up over 50 iterations).
- ``shipped+clip``: the same with gradient clipping at ``--clip-norm``.

``--recipe issue`` (default) trains with the demo recipe of the issue's time
(SGD lr 0.04, momentum 0.9, no gradient clipping; batch 4 here, not 8, to
keep the run short, so the step is larger than the issue's); ``--recipe demo``
keeps the config's (AdamW lr 1e-3, batch 4). Both: a 50-iteration linear LR
warm-up, then a constant LR; ``--num-train`` 36 images at ``--img-size`` 256.
The committed ``benchmarks/results/det_grad_norms.json`` and
``resources/det_grad_norms.png`` come from

    python benchmarks/det_grad_norms.py --variants baseline supcon-1cls \\
        supcon-1cls+warmup supcon-1cls+warmup+clip simclr-boxes shipped

(about 15 minutes on 2 busy cores; the default four variants take about 10).
``--replot`` redraws the plot from the JSON. Under the config's AdamW recipe,
``--adam-stats`` adds the fraction of its Adam step the detector keeps in
the shared layers (``det_step_kept``, see ``Recorder``); the committed
``det_grad_norms_adamw*.json`` come from

    python benchmarks/det_grad_norms.py --recipe demo --adam-stats \\
        --variants shipped --iters 150 --every 25 --cds-weight 0.1 (0.02) \\
        --out benchmarks/results/det_grad_norms_adamw(_w0.02).json \\
        --plot resources/det_grad_norms_adamw(_w0.02).png

CPU-scale evidence (one seed per call, 1 thread).
"""
import argparse
import json
import math
import os
import os.path as osp
import sys
import time
from collections import OrderedDict

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIG = 'configs/demo/faster-rcnn_r18-w16_fpn_cds_dense.py'
# the recipe of issue #13 had both heads; the dense config now ships the
# instance head alone, so the image-level one comes from the shapes demo
IMAGE_HEAD_CONFIG = 'configs/demo/faster-rcnn_r18-w16_fpn_cds_shapes.py'
VARIANTS = OrderedDict([
    ('baseline', dict(mode='off', supcon=False, warmup=False, clip=False)),
    ('supcon-1cls', dict(mode='cds', supcon=True, warmup=False, clip=False)),
    ('supcon-1cls+warmup',
     dict(mode='cds', supcon=True, warmup=True, clip=False)),
    ('supcon-1cls+warmup+clip',
     dict(mode='cds', supcon=True, warmup=True, clip=True)),
    ('simclr-boxes', dict(mode='cds', supcon=False, warmup=False, clip=False)),
    ('shipped', dict(mode='cds', supcon=None, warmup=None, clip=None)),
    ('shipped+clip', dict(mode='cds', supcon=None, warmup=None, clip=True)),
])
RECIPES = ('issue', 'demo')


def _finite(x):
    """A float for the JSON, 4 significant digits: None when not finite."""
    return float(f'{x:.4g}') if math.isfinite(x) else None


def build_cfg(args, name, spec):
    """The dense CDS config with the image-level head of the shapes demo at
    the instance head's weight, shortened to ``args.iters`` and changed as the
    variant says."""
    from mmengine.config import Config
    cfg = Config.fromfile(osp.join(REPO, CONFIG))
    root = osp.abspath(args.data_dir) + '/'
    cfg.train_dataloader.dataset.data_root = root
    cfg.train_dataloader.update(num_workers=0, persistent_workers=False)
    for step in cfg.train_dataloader.dataset.pipeline:
        if step['type'] == 'Resize':
            step['scale'] = (args.img_size, args.img_size)
    cfg.model.mode = spec['mode']
    cfg.model.cds_head = Config.fromfile(osp.join(
        REPO, IMAGE_HEAD_CONFIG)).model.cds_head
    cfg.model.cds_head.loss_weight = cfg.model.instance_head.loss_weight
    if args.cds_weight is not None:
        cfg.model.cds_head.loss_weight = args.cds_weight
        cfg.model.instance_head.loss_weight = args.cds_weight
    hooks = [h for h in cfg.custom_hooks if h['type'] != 'CDSWeightHook']
    shipped_warmup = [
        h for h in cfg.custom_hooks if h['type'] == 'CDSWeightHook'
    ]
    if spec['warmup'] is None:
        hooks += shipped_warmup
    elif spec['warmup']:
        hooks += shipped_warmup or [
            dict(type='CDSWeightHook', warmup_iters=50)
        ]
    cfg.custom_hooks = hooks
    if spec['clip']:
        cfg.optim_wrapper.clip_grad = dict(
            max_norm=args.clip_norm, norm_type=2)
    elif spec['clip'] is False:
        cfg.optim_wrapper.pop('clip_grad', None)
    if args.recipe == 'issue':
        cfg.train_dataloader.batch_size = 4
        cfg.optim_wrapper.optimizer = dict(
            type='SGD', lr=0.04, momentum=0.9, weight_decay=1e-4)
    cfg.train_cfg = dict(
        type='IterBasedTrainLoop', max_iters=args.iters, val_interval=10**6)
    cfg.param_scheduler = [
        dict(
            type='LinearLR',
            start_factor=0.01,
            by_epoch=False,
            begin=0,
            end=50)
    ]
    cfg.randomness = dict(seed=args.seed)
    cfg.default_hooks.checkpoint = dict(
        type='CheckpointHook', interval=-1, save_last=False)
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=50)
    cfg.update(
        work_dir=osp.join(args.work_dir, name),
        experiment_name=f'grad_norms_{name}',
        val_cfg=None,
        val_dataloader=None,
        val_evaluator=None,
        test_cfg=None,
        test_dataloader=None,
        test_evaluator=None)
    cfg.visualizer.name = f'grad_norms_{name}_{id(cfg)}'
    return cfg


class Recorder:
    """Wraps ``model.parse_losses``: logs every iteration's losses, and every
    ``every`` iterations each term's gradient norm in the shared parameters.

    With ``adam_stats``, every iteration also follows Adam's second moment of
    the shared parameters twice, once from the detector's gradient ``g_det``
    alone and once from ``g_det + g_cds`` (what the optimizer sees), and logs
    ``det_step_kept = ||g_det / sqrt(v_all)|| / ||g_det / sqrt(v_det)||``:
    the fraction of its Adam-normalised step the detector keeps in the shared
    layers once the CDS gradient shares the denominator (1: no
    interference).
    """

    def __init__(self, runner, every, max_iters, adam_stats=False):
        import torch
        self.torch = torch
        self.runner = runner
        self.every = every
        self.max_iters = max_iters
        model = runner.model
        det = model.detector if hasattr(model, 'detector') else model
        self.shared = [
            p for n, p in det.named_parameters()
            if n.startswith(('backbone.', 'neck.')) and p.requires_grad
        ]
        self.records = []
        self.inst = None
        # Adam's betas and eps are known once the optimizer is built
        self.adam = {} if adam_stats else None
        head = getattr(model, 'instance_head', None)
        if head is not None:
            head.projectors[0].register_forward_hook(self._projection_hook)
        self._parse = model.parse_losses
        model.parse_losses = self.parse_losses

    def _projection_hook(self, module, inputs, output):
        torch = self.torch
        with torch.no_grad():
            z = output.float()
            n = z.shape[0]
            if n < 2:
                self.inst = None
                return
            u = torch.nn.functional.normalize(z, dim=1)
            cos = (u @ u.t()).sum() - n
            self.inst = dict(
                proj_norm=_finite(float(z.norm(dim=1).mean())),
                mean_cos=_finite(float(cos / (n * (n - 1)))),
                rows=n)

    def parse_losses(self, losses):
        torch = self.torch
        it = self.runner.iter
        terms = OrderedDict()
        for key, value in losses.items():
            if 'loss' not in key:
                continue
            terms[key] = sum(value) if isinstance(value, list) else value
        rec = dict(
            iter=it,
            lr=float(self.runner.optim_wrapper.get_lr()['lr'][0]),
            cds_weight_scale=self.runner.message_hub.get_scalar(
                'train/cds_weight_scale').current() if 'train/cds_weight_scale'
            in self.runner.message_hub.log_scalars else None,
            losses={k: _finite(float(v.detach()))
                    for k, v in terms.items()})
        if self.inst is not None:
            rec.update(self.inst)
        if it % self.every == 0 or it == self.max_iters - 1:
            norms = OrderedDict()
            total = sum(terms.values())
            for key, value in list(terms.items()) + [('total', total)]:
                if not value.requires_grad:
                    continue
                grads = torch.autograd.grad(
                    value, self.shared, retain_graph=True, allow_unused=True)
                sq = sum(
                    float(g.detach().float().pow(2).sum()) for g in grads
                    if g is not None)
                norms[key] = _finite(math.sqrt(sq))
            rec['grad_norms'] = norms
        if self.adam is not None:
            rec['adam'] = self._adam_step(terms)
        self.records.append(rec)
        return self._parse(losses)

    def _adam_step(self, terms):
        """Update both second moments with this iteration's gradients;
        the detector's kept step and the CDS / detector gradient norm."""
        torch, state = self.torch, self.adam
        if not state:
            opt = self.runner.optim_wrapper.optimizer
            state.update(
                beta2=opt.defaults['betas'][1],
                eps=opt.defaults['eps'],
                v_det=[torch.zeros_like(p) for p in self.shared],
                v_all=[torch.zeros_like(p) for p in self.shared])
        grads = {}
        for part, keys in (('det', [k for k in terms if 'cds' not in k]),
                           ('cds', [k for k in terms if 'cds' in k])):
            total = sum(terms[k] for k in keys if terms[k].requires_grad)
            if not torch.is_tensor(total):  # no such term (the baseline)
                grads[part] = [torch.zeros_like(p) for p in self.shared]
                continue
            grads[part] = [
                torch.zeros_like(p) if g is None else g.detach()
                for p, g in zip(
                    self.shared,
                    torch.autograd.grad(
                        total,
                        self.shared,
                        retain_graph=True,
                        allow_unused=True))
            ]
        b2, eps = state['beta2'], state['eps']
        kept_sq = alone_sq = det_sq = cds_sq = 0.0
        for i, (gd, gc) in enumerate(zip(grads['det'], grads['cds'])):
            state['v_det'][i].mul_(b2).addcmul_(gd, gd, value=1 - b2)
            state['v_all'][i].mul_(b2).addcmul_(gd + gc, gd + gc, value=1 - b2)
            # bias correction divides both moments alike: left out
            kept_sq += float(
                (gd / (state['v_all'][i].sqrt() + eps)).pow(2).sum())
            alone_sq += float(
                (gd / (state['v_det'][i].sqrt() + eps)).pow(2).sum())
            det_sq += float(gd.pow(2).sum())
            cds_sq += float(gc.pow(2).sum())
        return dict(
            det_step_kept=_finite(math.sqrt(kept_sq / max(alone_sq, 1e-30))),
            cds_over_det=_finite(math.sqrt(cds_sq / max(det_sq, 1e-30))))


def run_variant(args, name, spec):
    from mmengine.runner import Runner
    cfg = build_cfg(args, name, spec)
    runner = Runner.from_cfg(cfg)
    model = runner.model
    if spec['supcon']:
        head = model.instance_head
        head.use_labels = True
        # the behaviour: SupCon even when every box has one label
        head._contrast_ids = lambda labels: labels
    elif spec['supcon'] is False and spec['mode'] == 'cds':
        model.instance_head.use_labels = False
    start = time.time()
    rec = Recorder(runner, args.every, args.iters, args.adam_stats)
    diverged, message = None, None
    try:
        runner.train()
    except FloatingPointError as err:
        diverged, message = runner.iter + 1, str(err).split('. ')[0]
    return dict(
        spec=spec,
        diverged_at=diverged,
        message=message,
        seconds=round(time.time() - start, 1),
        records=rec.records[:args.iters])


def summarise(result):
    """Per term: median and max gradient norm over the logged iterations."""
    logged = [r['grad_norms'] for r in result['records'] if 'grad_norms' in r]
    # after the LR warm-up, when the moments have seen 50 iterations
    adam = [r['adam'] for r in result['records'] if 'adam' in r][50:]
    series = [(key, [g.get(key) for g in logged])
              for key in dict.fromkeys(k for g in logged for k in g)]
    series += [(key, [a[key] for a in adam])
               for key in ('det_step_kept', 'cds_over_det')]
    out = OrderedDict()
    for key, vals in series:
        vals = sorted(v for v in vals if v is not None)
        if vals:
            out[key] = dict(
                median=vals[len(vals) // 2], max=vals[-1], n=len(vals))
    return out


def short(key):
    return key.replace('loss_cds_inst_',
                       'inst_').replace('loss_cds_',
                                        'img_').replace('loss_', '')


def print_table(results):
    keys = list(
        dict.fromkeys(k for res in results.values() for k in res['summary']))
    print('gradient L2 norm into backbone + neck: median / max over the run')
    print(f"{'term':<14}" + ''.join(f'{n:>22}' for n in results))
    for key in keys:
        cells = []
        for res in results.values():
            s = res['summary'].get(key)
            cells.append(
                f"{s['median']:9.3g} / {s['max']:<9.3g}" if s else '-')
        print(f'{short(key):<14}' + ''.join(f'{c:>22}' for c in cells))
    print(f"{'diverged at':<14}" +
          ''.join(f"{str(r['diverged_at'] or '-'):>22}"
                  for r in results.values()))


def plot(results, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    names = list(results)
    cols = min(3, len(names))
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(
        rows,
        cols,
        figsize=(4.2 * cols, 3.0 * rows),
        sharey=True,
        squeeze=False)
    styles = dict(loss_cls=('k', '-'), loss_bbox=('0.5', '-'))
    for ax, name in zip(axes.flat, names):
        res = results[name]
        logged = [r for r in res['records'] if 'grad_norms' in r]
        keys = list(dict.fromkeys(k for r in logged for k in r['grad_norms']))
        for key in keys:
            if key in ('total', 'loss_rpn_bbox'):
                continue
            xs = [r['iter'] for r in logged if r['grad_norms'].get(key)]
            ys = [
                r['grad_norms'][key] for r in logged
                if r['grad_norms'].get(key)
            ]
            colour, line = styles.get(key, (None, '-'))
            if key.startswith('loss_cds_inst'):
                colour, line = 'tab:red', '-'
            elif key.startswith('loss_cds_'):
                line = ':'
            elif key == 'loss_rpn_cls':
                colour = '0.7'
            ax.plot(xs, ys, line, color=colour, lw=1.2, label=short(key))
        if res['diverged_at']:
            ax.axvline(res['diverged_at'] - 1, color='tab:red', lw=0.8)
            ax.text(
                res['diverged_at'] - 1,
                2e-3,
                'NaN ',
                color='tab:red',
                ha='right',
                fontsize=8)
        adam = [(r['iter'], r['adam']['det_step_kept']) for r in res['records']
                if 'adam' in r]
        if adam and name != 'baseline':
            kept = ax.twinx()
            kept.plot(*zip(*adam), color='tab:green', lw=1.0)
            kept.set_ylim(0, 1.05)
            kept.set_ylabel(
                'detector Adam step kept', fontsize=7, color='tab:green')
            kept.tick_params(labelsize=7)
        ax.set_yscale('log')
        ax.set_ylim(1e-3, 1e4)  # a blow-up leaves the frame at the top
        ax.axvline(50, color='0.6', lw=0.6, ls='--')  # end of LR warm-up
        cos = {
            r['iter']: r['mean_cos']
            for r in res['records'] if 'mean_cos' in r
        }
        title = name if 40 not in cos else (
            f'{name} (box cos {cos[0]:.2f} -> {cos[40]:.2f} at it 40)')
        ax.set_title(title, fontsize=9)
        ax.set_xlabel('iteration', fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes.flat[len(names):]:
        ax.axis('off')
    for row in axes:
        row[0].set_ylabel('grad L2 norm, backbone+neck', fontsize=8)
    # the legend where most terms are drawn
    most = max(axes.flat[:len(names)], key=lambda a: len(a.get_lines()))
    most.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=70)
    plt.close(fig)


def write_json(args, results):
    import torch
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    with open(args.out, 'w') as f:
        json.dump(
            dict(
                config=CONFIG,
                args={
                    k: v
                    for k, v in vars(args).items()
                    if k not in ('out', 'plot', 'work_dir', 'data_dir')
                },
                torch=torch.__version__,
                results=results),
            f,
            separators=(',', ':'))


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        '--variants',
        nargs='+',
        choices=list(VARIANTS),
        default=['baseline', 'supcon-1cls', 'simclr-boxes', 'shipped'])
    parser.add_argument('--recipe', choices=RECIPES, default='issue')
    parser.add_argument('--iters', type=int, default=80)
    parser.add_argument('--every', type=int, default=5)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--num-train', type=int, default=36)
    parser.add_argument('--img-size', type=int, default=256)
    parser.add_argument('--data-dir', default='data/dense_grad_norms')
    parser.add_argument('--work-dir', default='work_dirs/det_grad_norms')
    parser.add_argument(
        '--out', default='benchmarks/results/det_grad_norms.json')
    parser.add_argument('--plot', default='resources/det_grad_norms.png')
    parser.add_argument(
        '--threads', type=int, default=1, help='torch CPU threads')
    parser.add_argument(
        '--clip-norm',
        type=float,
        default=35.0,
        help='max_norm of the gradient clipping in the +clip variants')
    parser.add_argument(
        '--adam-stats',
        action='store_true',
        help='every iteration, the fraction of its Adam step the detector '
        'keeps in the shared layers beside the CDS gradient (two more '
        'gradient passes an iteration)')
    parser.add_argument(
        '--cds-weight',
        type=float,
        help='loss_weight of both CDS heads (default: the config\'s)')
    parser.add_argument(
        '--replot',
        action='store_true',
        help='only redraw --plot from the results in --out')
    return parser.parse_args()


def main():
    args = parse_args()
    os.chdir(REPO)
    if args.replot:
        with open(args.out) as f:
            plot(json.load(f)['results'], args.plot)
        return
    sys.path.insert(0, REPO)
    import torch
    torch.set_num_threads(args.threads)
    import cds_mm.compat
    from cds_mm.datasets import make_dense_coco
    cds_mm.compat.apply_all()  # as tools/train.py does
    make_dense_coco(
        args.data_dir,
        num_train=args.num_train,
        num_val=0,
        img_size=args.img_size,
        seed=0)
    results = OrderedDict()
    for name in args.variants:
        print(f'[grad_norms] {name} ...', flush=True)
        res = run_variant(args, name, VARIANTS[name])
        res['summary'] = summarise(res)
        results[name] = res
        print(
            f"[grad_norms] {name}: {res['seconds']} s, diverged at "
            f"{res['diverged_at']}",
            flush=True)
        write_json(args, results)  # after each variant: a partial file
    print_table(results)
    plot(results, args.plot)
    print(f'[grad_norms] wrote {args.out} and {args.plot}')


if __name__ == '__main__':
    main()
