"""The classification benchmark's pictures (benchmarks/README.md), as PNGs.

From ``benchmarks/results/cls_accuracy.json`` (no training):

* ``cls_val_curves.png``: per-epoch val top-1 of baseline / DSN / CDS;
* ``cds_loss_curves.png``: per-epoch CE and per-stage CDS losses of a CDS
  run (the weighted terms the optimiser sees);
* ``reliability_diagrams.png``: test reliability diagrams per method, from
  the bins ``ECEMetric`` computed.

With ``--tsne`` it also loads the best-val checkpoints of one seed's
baseline and CDS runs (the benchmark's work dir must still hold them) and
draws ``tsne_stages.png``: a t-SNE of each tapped stage's globally pooled
features on the first ``--tsne-images`` test images, baseline above CDS,
each panel titled with the silhouette score of the true classes in the
original feature space (higher = classes better separated), and writes
those scores to ``benchmarks/results/cls_stage_silhouette.json``. Needs
scikit-learn.

    python benchmarks/make_figures.py --tsne
"""
import argparse
import json
import os
import os.path as osp
import sys

import numpy as np

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, REPO)

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from cds_mm.utils import atomic_write

COLORS = dict(off='tab:gray', dsn='tab:blue', cds='tab:red')
NAMES = dict(off='baseline', dsn='DSN', cds='CDS')
STAGES = ('layer1', 'layer2', 'layer3', 'layer4')
CLASSES = ('T-shirt', 'trouser', 'pullover', 'dress', 'coat', 'sandal',
           'shirt', 'sneaker', 'bag', 'boot')


def new_figure(w, h):
    fig = Figure(figsize=(w, h), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def val_curves(data, out):
    """Val top-1 per epoch, one thin line per seed, the seed mean bold."""
    fig = new_figure(5.5, 3.6)
    ax = fig.add_subplot(1, 1, 1)
    for mode in ('off', 'dsn', 'cds'):
        runs = [r for r in data['runs'] if r['mode'] == mode]
        if not runs:
            continue
        for r in runs:
            ax.plot(
                range(1,
                      len(r['val_top1']) + 1),
                r['val_top1'],
                color=COLORS[mode],
                alpha=0.35,
                linewidth=0.8)
        n = min(len(r['val_top1']) for r in runs)
        mean = np.mean([r['val_top1'][:n] for r in runs], axis=0)
        ax.plot(
            range(1, n + 1),
            mean,
            color=COLORS[mode],
            linewidth=2,
            label=f'{NAMES[mode]} ({len(runs)} seeds)')
    ax.set(
        xlabel='epoch',
        ylabel='val top-1 (%)',
        ylim=(80, 93),
        title='Fashion-MNIST val accuracy (thin: one seed)')
    ax.grid(alpha=0.3)
    ax.legend(loc='lower right')
    fig.tight_layout()
    fig.savefig(out)


def loss_curves(data, out, seed):
    """CE and the weighted per-stage CDS losses of one CDS run."""
    run = next(
        (r for r in data['runs'] if r['mode'] == 'cds' and r['seed'] == seed),
        None)
    if run is None:
        print(f'no CDS run of seed {seed}: {out} skipped')
        return
    fig = new_figure(5.5, 3.6)
    ax = fig.add_subplot(1, 1, 1)
    for key, values in sorted(run['losses'].items()):
        if key == 'loss':
            continue
        ax.plot(
            range(1,
                  len(values) + 1),
            values,
            marker='.',
            label=key,
            linewidth=1.5 if key == 'loss_cls' else 1)
    ax.set(
        xlabel='epoch',
        ylabel='mean training loss',
        yscale='log',
        title=f'CDS run, seed {seed}: CE and per-stage CDS terms')
    ax.grid(alpha=0.3, which='both')
    ax.legend(fontsize=7, loc='upper right')
    fig.tight_layout()
    fig.savefig(out)


def reliability(data, out, seed, title='Test reliability'):
    """Test reliability diagrams of one seed, one panel per method, under
    ``'<title>, seed <seed>'``."""
    runs = [
        r for m in ('off', 'dsn', 'cds') for r in data['runs']
        if r['mode'] == m and r['seed'] == seed
    ]
    if not runs:
        print(f'no run of seed {seed}: {out} skipped')
        return
    fig = new_figure(3 * len(runs), 3.2)
    for i, r in enumerate(runs):
        ax = fig.add_subplot(1, len(runs), i + 1)
        rel = {k: np.array(v) for k, v in r['reliability'].items()}
        m = len(rel['acc'])
        centers = (np.arange(m) + 0.5) / m
        acc = np.where(rel['count'] > 0, rel['acc'], 0)
        conf = np.where(rel['count'] > 0, rel['conf'], 0)
        ax.bar(
            centers,
            acc,
            width=1 / m,
            edgecolor='black',
            color=COLORS[r['mode']],
            alpha=0.7,
            label='accuracy')
        ax.bar(
            centers,
            conf - acc,
            bottom=acc,
            width=1 / m,
            color='none',
            edgecolor='red',
            hatch='//',
            label='gap to confidence')
        ax.plot([0, 1], [0, 1], 'k--', linewidth=1)
        ax.set(
            xlim=(0, 1),
            ylim=(0, 1),
            xlabel='confidence',
            title=f'{NAMES[r["mode"]]}: ECE {r["ece"]:.2f} %')
        if i == 0:
            ax.set_ylabel('accuracy')
            ax.legend(loc='upper left', fontsize=7)
    fig.suptitle(f'{title}, seed {seed}', fontsize=9)
    fig.tight_layout()
    fig.savefig(out)


def stage_features(config, checkpoint, mode, images):
    """Globally pooled output of each backbone stage on ``images``.

    Shapes:
        images: (N, 28, 28) uint8.
        return: dict stage -> (N, C_stage) float32.
    """
    import torch
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmengine.runner import load_checkpoint

    import cds_mm  # noqa: F401  (registers the wrapper)
    import cds_mm.compat
    cds_mm.compat.apply_all()  # torch>=2.6 loads mmengine checkpoints
    from mmpretrain.registry import MODELS

    cfg = Config.fromfile(osp.join(REPO, config))
    cfg.model.mode = mode
    init_default_scope('mmpretrain')
    model = MODELS.build(cfg.model)
    load_checkpoint(model, osp.join(REPO, checkpoint), map_location='cpu')
    model.eval()
    backbone = model.classifier.backbone
    feats = {}

    def hook(name):

        def fn(_module, _inputs, output):
            feats.setdefault(name, []).append(output.mean(dim=(2, 3)).numpy())

        return fn

    handles = [
        getattr(backbone, s).register_forward_hook(hook(s)) for s in STAGES
    ]
    x = torch.from_numpy(images).float()[:, None].repeat(1, 3, 1, 1)
    with torch.no_grad():
        for batch in torch.split(x, 500):
            pre = model.classifier.data_preprocessor(
                dict(inputs=list(batch)), False)['inputs']
            backbone(pre)
    for h in handles:
        h.remove()
    return {s: np.concatenate(v) for s, v in feats.items()}


def tsne(data, out, seed, n_images, data_root):
    """t-SNE of each stage, baseline (top row) vs CDS (bottom row).

    Returns:
        dict: The silhouette score per method and stage, e.g.
        ``{'off': {'layer1': 0.05, ...}, 'cds': {...}}``.
    """
    from sklearn.manifold import TSNE
    from sklearn.metrics import silhouette_score

    from cds_mm.datasets.fashion_mnist import find_idx_files, load_idx_pair
    images, labels = load_idx_pair(*find_idx_files(data_root)['test'])
    images, labels = images[:n_images], labels[:n_images]
    config = data['args'].get('config') or \
        'configs/demo/resnet18-w16_cds_1xb128_fashionmnist.py'
    modes = [
        m for m in ('off', 'cds')
        if any(r['mode'] == m and r['seed'] == seed for r in data['runs'])
    ]
    fig = new_figure(2.4 * len(STAGES), 2.5 * len(modes))
    silhouettes = {}
    for row, mode in enumerate(modes):
        run = next(r for r in data['runs']
                   if r['mode'] == mode and r['seed'] == seed)
        feats = stage_features(config, run['checkpoint'], mode, images)
        for col, stage in enumerate(STAGES):
            f = feats[stage]
            sil = silhouette_score(f, labels)
            silhouettes.setdefault(mode, {})[stage] = round(float(sil), 4)
            emb = TSNE(
                2, init='pca', perplexity=30, random_state=0).fit_transform(f)
            ax = fig.add_subplot(
                len(modes), len(STAGES),
                row * len(STAGES) + col + 1)
            ax.scatter(
                emb[:, 0],
                emb[:, 1],
                c=labels,
                cmap='tab10',
                s=1.5,
                linewidths=0)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f'{NAMES[mode]} {stage}: sil {sil:.2f}', fontsize=8)
            print(f'{NAMES[mode]} {stage}: silhouette {sil:.3f}', flush=True)
    fig.suptitle(
        f't-SNE of pooled stage features, {n_images} test images, '
        f'seed {seed} (colour = class)',
        fontsize=9)
    fig.tight_layout()
    fig.savefig(out)
    return silhouettes


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        '--results',
        default=osp.join(REPO, 'benchmarks', 'results', 'cls_accuracy.json'))
    parser.add_argument('--out-dir', default=osp.join(REPO, 'resources'))
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--tsne', action='store_true')
    parser.add_argument('--tsne-images', type=int, default=2000)
    parser.add_argument(
        '--silhouettes',
        default=osp.join(REPO, 'benchmarks', 'results',
                         'cls_stage_silhouette.json'),
        help='with --tsne: the silhouette scores of the true classes per '
        'method and stage')
    parser.add_argument(
        '--data-root', default='/usr/share/datasets/fashion-mnist')
    args = parser.parse_args(argv)
    with open(args.results) as f:
        data = json.load(f)
    os.makedirs(args.out_dir, exist_ok=True)
    val_curves(data, osp.join(args.out_dir, 'cls_val_curves.png'))
    loss_curves(data, osp.join(args.out_dir, 'cds_loss_curves.png'), args.seed)
    reliability(data, osp.join(args.out_dir, 'reliability_diagrams.png'),
                args.seed)
    if args.tsne:
        sil = tsne(data, osp.join(args.out_dir, 'tsne_stages.png'), args.seed,
                   args.tsne_images, args.data_root)
        with atomic_write(args.silhouettes) as f:
            json.dump(
                dict(
                    benchmark='benchmarks/make_figures.py --tsne',
                    results=osp.relpath(args.results, REPO),
                    seed=args.seed,
                    test_images=args.tsne_images,
                    features='globally pooled output of each stage',
                    silhouette=sil),
                f,
                indent=1)
    print(f'figures in {args.out_dir}')


if __name__ == '__main__':
    main()
