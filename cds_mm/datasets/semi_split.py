"""A labelled / unlabelled split of any mmpretrain dataset, fixed by a seed and
kept in a file.

``tools/dataset_converters/make_semi_split.py`` writes the file once
(class-stratified, from the dataset's own annotations);
:class:`SemiSplitDataset` reads it, so every run, rank and method of a
comparison trains on the same labelled images.
"""
import json
import os.path as osp
from typing import Dict, Sequence, Tuple, Union

import numpy as np
from mmengine.dataset import BaseDataset
from mmpretrain.registry import DATASETS

from ..utils.fileio import atomic_write
from .data_checks import converters_dir


def stratified_split(labels: Sequence[int], fraction: float,
                     seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """Pick ``fraction`` of each class as labelled; the rest is unlabelled.

    Each class keeps ``round(fraction * n_c)`` images, at least one.

    Args:
        labels (Sequence[int]): Class id of every sample, (N,).
        fraction (float): Labelled share, in (0, 1).
        seed (int): Seed of the per-class shuffles.

    Returns:
        tuple: Sorted, disjoint index arrays (labelled, unlabelled) covering
            ``range(N)``.
    """
    if not 0 < fraction < 1:
        raise ValueError(f'fraction must be in (0, 1), got {fraction!r}')
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(labels) == 0:
        raise ValueError(
            f'expected a non-empty 1-D label array, got shape {labels.shape}')
    rng = np.random.default_rng(seed)
    labelled = []
    for cls in np.unique(labels):
        idx = np.flatnonzero(labels == cls)
        k = max(1, int(round(fraction * len(idx))))
        labelled.append(rng.permutation(idx)[:k])
    labelled = np.sort(np.concatenate(labelled))
    unlabelled = np.setdiff1d(np.arange(len(labels)), labelled)
    return labelled, unlabelled


def write_split(path: str, labels: Sequence[int], fraction: float,
                seed: int) -> Dict:
    """Compute :func:`stratified_split` and write it as JSON (atomically);
    return the content."""
    labelled, unlabelled = stratified_split(labels, fraction, seed)
    split = dict(
        fraction=float(fraction),
        seed=int(seed),
        num_samples=len(labels),
        labelled=labelled.tolist(),
        unlabelled=unlabelled.tolist())
    with atomic_write(path) as f:
        json.dump(split, f)
    return split


@DATASETS.register_module()
class SemiSplitDataset(BaseDataset):
    """A dataset split into a labelled and an unlabelled part, labelled samples
    first.

    The unlabelled samples lose ``gt_label``, so their packed ``DataSample``
    has no label and the semi-supervised wrapper cannot use them with one.
    ``cumulative_sizes`` marks the two parts as in a ``ConcatDataset``, so
    ``mmdet.MultiSourceSampler(source_ratio=[l, u])`` draws a fixed number of
    each per batch (see ``configs/cds_semi``).

    Args:
        dataset (dict | BaseDataset): The full dataset (config or instance);
            its pipeline is applied to the kept samples.
        split_file (str): JSON written by
            ``tools/dataset_converters/make_semi_split.py``.
        fraction (float): Labelled share the file must hold, checked against
            it.
        seed (int): Split seed the file must hold, checked against it. Defaults
            to 0.
        lazy_init (bool): Defer reading the file to first use. Defaults to
            False.

    Attributes:
        cumulative_sizes (list[int]): ``[num_labelled, len(self)]``.
        datasets (list[range]): The index ranges of the two parts. With
            ``cumulative_sizes`` this is the ``ConcatDataset`` interface that
            ``MultiSourceSampler`` reads (it only takes their lengths).
    """

    def __init__(self,
                 dataset: Union[dict, BaseDataset],
                 split_file: str,
                 fraction: float,
                 seed: int = 0,
                 lazy_init: bool = False):
        self.dataset = DATASETS.build(dataset) if isinstance(dataset,
                                                             dict) else dataset
        self.split_file = split_file
        self.fraction, self.seed = float(fraction), int(seed)
        self.cumulative_sizes, self.datasets = [], []
        super().__init__(
            metainfo=self.dataset.metainfo,
            pipeline=[self.dataset.pipeline],
            lazy_init=lazy_init)

    def load_data_list(self) -> list:
        """The inner dataset's data infos, labelled then unlabelled, read
        through the file."""
        if not osp.isfile(self.split_file):
            raise FileNotFoundError(
                f'SemiSplitDataset.split_file {self.split_file!r} does not '
                'exist: make it with `python '
                f'{osp.join(converters_dir(), "make_semi_split.py")} CONFIG` '
                '(the training config; fraction and seed are read from it)')
        with open(self.split_file) as f:
            split = json.load(f)
        self.dataset.full_init()
        expected = dict(
            fraction=self.fraction,
            seed=self.seed,
            num_samples=len(self.dataset))
        found = {k: split.get(k) for k in expected}
        if found != expected:
            raise ValueError(
                f'SemiSplitDataset.split_file {self.split_file!r} holds '
                f'{found}, but the config '
                f'asks for {expected}: re-run '
                f'{osp.join(converters_dir(), "make_semi_split.py")} with '
                'this config or point split_file elsewhere')
        labelled = [self.dataset.get_data_info(i) for i in split['labelled']]
        unlabelled = [
            self.dataset.get_data_info(i) for i in split['unlabelled']
        ]
        for info in unlabelled:
            info.pop('gt_label', None)
        self.cumulative_sizes = [
            len(labelled), len(labelled) + len(unlabelled)
        ]
        self.datasets = [
            range(len(labelled)),
            range(len(labelled), self.cumulative_sizes[1])
        ]
        return labelled + unlabelled
