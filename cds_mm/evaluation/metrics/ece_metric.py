"""Expected Calibration Error (Guo et al. 2017) for single-label classifiers.
"""
import logging
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence

import torch
from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log
from mmengine.registry import METRICS
from mmengine.visualization import Visualizer

from ..temperature_scaling import check_temperature, scale_scores


def _default_out_dir() -> Optional[str]:
    """The save dir of the current Visualizer's first backend that has one,
    else None.

    A runner builds its visualizer with ``save_dir=<log_dir>`` and each backend
    then writes under ``<log_dir>/vis_data``; that folder is returned. mmengine
    exposes a backend's folder only as ``_save_dir``, hence the ``getattr``.
    """
    try:
        vis = Visualizer.get_current_instance()
    except RuntimeError:  # no Visualizer was ever created
        return None
    for backend in getattr(vis, '_vis_backends', {}).values():
        save_dir = getattr(backend, '_save_dir', None)
        if save_dir:
            return save_dir
    return None


@METRICS.register_module()
class ECEMetric(BaseMetric):
    """Expected / maximum calibration error and top-1 accuracy of a classifier.

    The top-1 confidences are split into ``num_bins`` equal-width bins ``(k/M,
    (k+1)/M]`` (a confidence of 0 joins the first bin). With ``B_k`` the
    samples of bin ``k``, ``N`` all samples, ``acc_k`` the fraction of ``B_k``
    whose top-1 class is right and ``conf_k`` their mean confidence::

        ECE = 100 * sum_k |B_k| / N * |acc_k - conf_k|
        MCE = 100 * max_{k: |B_k| > 0} |acc_k - conf_k|

    Reported, all in percent: ``{prefix}/ece``, ``{prefix}/mce`` and
    ``{prefix}/accuracy``.

    Args:
        num_bins (int): Number of equal-width confidence bins. Defaults to 15.
        save_diagram (bool): Whether to write a reliability diagram PNG (bar
            per bin: accuracy, with the gap to the mean confidence) at each
            evaluation. Defaults to True.
        out_dir (str, optional): Folder for the diagram, created if needed.
            Defaults to None: the current ``Visualizer``'s save dir
            (``<log_dir>/vis_data`` under a runner); when there is none the
            diagram is skipped with a warning. The file is
            ``{prefix}_reliability_diagram.png`` and each evaluation overwrites
            it.
        collect_device (str): Device used to collect results across ranks,
            'cpu' or 'gpu'. Defaults to 'cpu'.
        prefix (str, optional): Prefix of the metric names. Defaults to
            'calib'.
        temperature (float): Scores are rescaled to ``softmax(log(p) / T)``
            before binning (post-hoc temperature scaling, fitted by
            ``tools/calibrate_temperature.py``); the accuracy is unchanged.
            An option of the metric, not a model wrapper, so a checkpoint and
            its predictions stay as they are and one test run can report
            ECE at T = 1 and at T side by side (two metrics, two prefixes).
            Defaults to 1.0 (the scores as given).

    Shapes:
        pred_score: (C,) class probabilities of one sample (each
            ``data_sample`` dict).
        gt_label: (1,) or () int class id of one sample.
    """
    default_prefix: Optional[str] = 'calib'

    def __init__(self,
                 num_bins: int = 15,
                 save_diagram: bool = True,
                 out_dir: Optional[str] = None,
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = 'calib',
                 temperature: float = 1.0) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        if not isinstance(num_bins, int) or num_bins < 1:
            raise ValueError(f'num_bins must be an int >= 1, got {num_bins!r}')
        self.num_bins = num_bins
        self.save_diagram = save_diagram
        self.out_dir = out_dir
        check_temperature(temperature)
        self.temperature = float(temperature)

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        """Store the top-1 confidence and correctness of each sample.

        Args:
            data_batch: A batch of data from the dataloader (unused).
            data_samples (Sequence[dict]): mmpretrain ``DataSample`` dicts with
                ``pred_score`` and ``gt_label``.
        """
        for sample in data_samples:
            if 'pred_score' not in sample:
                raise ValueError(
                    'ECEMetric needs `pred_score` in each data sample, got '
                    'keys '
                    f'{sorted(sample.keys())}')
            score = torch.as_tensor(
                sample['pred_score']).detach().cpu().float()
            if self.temperature != 1.0:
                score = scale_scores(score, self.temperature)
            gt = torch.as_tensor(sample['gt_label']).reshape(-1)
            if gt.numel() != 1:
                raise ValueError(
                    f'gt_label must hold one class id, got {gt.numel()}: '
                    'ECEMetric '
                    'is for single-label classification')
            conf, pred = score.reshape(-1).max(dim=0)
            self.results.append(
                dict(conf=float(conf), correct=bool(int(pred) == int(gt))))

    def compute_metrics(self, results: List[dict]) -> Dict[str, float]:
        """Compute ECE, MCE and top-1 accuracy from the stored results.

        Args:
            results (list[dict]): ``dict(conf=float, correct=bool)`` per
                sample.

        Returns:
            dict[str, float]: ``ece``, ``mce`` and ``accuracy``, in percent.
        """
        conf = torch.tensor([r['conf'] for r in results], dtype=torch.float64)
        correct = torch.tensor([r['correct'] for r in results],
                               dtype=torch.float64)
        stats = self.bin_stats(conf, correct, self.num_bins)
        count, acc, mean_conf = stats['count'], stats['acc'], stats['conf']
        gap = (acc - mean_conf).abs()
        nonempty = count > 0
        ece = float((count / count.sum() * gap).sum()) * 100
        mce = float(gap[nonempty].max()) * 100
        metrics = dict(ece=ece, mce=mce, accuracy=float(correct.mean()) * 100)
        if self.save_diagram:
            self._save_diagram(stats, ece)
        return metrics

    @staticmethod
    def bin_stats(conf: torch.Tensor, correct: torch.Tensor,
                  num_bins: int) -> Dict[str, torch.Tensor]:
        """Per-bin sample count, accuracy and mean confidence.

        Args:
            conf (Tensor): Top-1 confidences in [0, 1].
            correct (Tensor): 1.0 where the top-1 class is right, else 0.0.
            num_bins (int): Number of equal-width bins over [0, 1].

        Returns:
            dict[str, Tensor]: ``count``, ``acc`` and ``conf`` (0 in empty
            bins) per bin.

        Shapes:
            conf: (N,) float64.
            correct: (N,) float64.
            return: each value (num_bins,) float64.
        """
        if conf.numel() == 0:
            raise ValueError('ECEMetric got no samples to evaluate')
        inner_edges = torch.linspace(
            0, 1, num_bins + 1, dtype=torch.float64)[1:-1]
        # edges[k-1] < c <= edges[k]
        idx = torch.bucketize(conf, inner_edges, right=False)
        count = torch.zeros(
            num_bins, dtype=torch.float64).index_add_(0, idx,
                                                      torch.ones_like(conf))
        hits = torch.zeros(
            num_bins, dtype=torch.float64).index_add_(0, idx, correct)
        confs = torch.zeros(
            num_bins, dtype=torch.float64).index_add_(0, idx, conf)
        denom = count.clamp(min=1)
        return dict(count=count, acc=hits / denom, conf=confs / denom)

    def _save_diagram(self, stats: Dict[str, torch.Tensor],
                      ece: float) -> None:
        """Write the reliability diagram to ``out_dir`` (or the Visualizer's
        save dir)."""
        out_dir = self.out_dir
        if out_dir is None:
            out_dir = _default_out_dir()
        if out_dir is None:
            print_log(
                'ECEMetric: no out_dir and no Visualizer save dir, '
                'reliability diagram '
                'skipped',
                logger='current',
                level=logging.WARNING)
            return
        # Figure + Agg canvas, not pyplot: no global backend switch, no GUI
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        m = self.num_bins
        centers = (torch.arange(m, dtype=torch.float64) + 0.5) / m
        # both 0 in empty bins: no bar drawn
        acc, conf = stats['acc'], stats['conf']
        fig = Figure(figsize=(4, 4), dpi=100)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot(1, 1, 1)
        ax.bar(
            centers.numpy(),
            acc.numpy(),
            width=1 / m,
            edgecolor='black',
            label='accuracy')
        ax.bar(
            centers.numpy(), (conf - acc).numpy(),
            bottom=acc.numpy(),
            width=1 / m,
            color='red',
            alpha=0.3,
            edgecolor='red',
            label='gap')
        ax.plot([0, 1], [0, 1], 'k--', linewidth=1)
        ax.set(
            xlim=(0, 1),
            ylim=(0, 1),
            xlabel='confidence',
            ylabel='accuracy',
            title=f'{self.prefix or ""} ECE = {ece:.2f}%'.strip())
        ax.legend(loc='upper left')
        os.makedirs(out_dir, exist_ok=True)
        name = f'{self.prefix}_reliability_diagram.png' if self.prefix else \
            'reliability_diagram.png'
        fig.savefig(osp.join(out_dir, name))
