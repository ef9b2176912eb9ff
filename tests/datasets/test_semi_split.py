import json
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest
from cds_test_utils import REPO_ROOT, write_fashion_idx
from mmengine.registry import DATA_SAMPLERS, init_default_scope

from cds_mm.datasets import SemiSplitDataset, stratified_split, write_split

TOOL = osp.join(REPO_ROOT, 'tools', 'dataset_converters', 'make_semi_split.py')
SEMI_CFG = osp.join(REPO_ROOT, 'configs', 'demo',
                    'resnet18-w16_semi-cds-20p_fashionmnist.py')
LABELS = np.repeat(np.arange(4), [10, 20, 30, 40])


def test_stratified_split_keeps_the_fraction_of_every_class():
    lab, unl = stratified_split(LABELS, 0.25, seed=0)
    assert np.array_equal(
        np.sort(np.concatenate([lab, unl])), np.arange(len(LABELS)))
    assert not set(lab) & set(unl)
    # round(0.25 * n_c)
    assert np.bincount(LABELS[lab]).tolist() == [2, 5, 8, 10]
    assert np.array_equal(lab, stratified_split(LABELS, 0.25, seed=0)[0])
    assert not np.array_equal(lab, stratified_split(LABELS, 0.25, seed=1)[0])


def test_stratified_split_keeps_one_image_of_a_rare_class():
    lab, _ = stratified_split([0] * 50 + [1], 0.1, seed=0)
    assert (np.asarray([0] * 50 + [1])[lab] == 1).sum() == 1


@pytest.mark.parametrize('fraction', [0, 1, 1.5, -0.2])
def test_stratified_split_rejects_fractions_outside_0_1(fraction):
    with pytest.raises(ValueError, match='fraction'):
        stratified_split(LABELS, fraction, seed=0)


def fmnist(root, pipeline=()):
    return dict(
        type='FashionMNISTIDX',
        data_root=str(root),
        split='train',
        val_size=8,
        pipeline=list(pipeline))


def test_dataset_puts_labelled_first_and_strips_the_others(tmp_path):
    write_fashion_idx(str(tmp_path / 'fm'), n=48)
    split_file = str(tmp_path / 'split.json')
    # any labels: the file is what is read
    inner_labels = np.arange(48)[8:] % 10
    write_split(split_file, inner_labels, 0.25, seed=3)
    pipeline = [dict(type='PackInputs')]
    ds = SemiSplitDataset(
        fmnist(tmp_path / 'fm', pipeline), split_file, fraction=0.25, seed=3)
    split = json.load(open(split_file))
    n_lab = len(split['labelled'])
    assert ds.cumulative_sizes == [n_lab, 40] and len(ds) == 40
    assert [len(d) for d in ds.datasets] == [n_lab, 40 - n_lab]
    inner = ds.dataset
    for i in (0, n_lab - 1):
        packed = ds[i]['data_samples']
        assert 'gt_label' in packed
        assert int(packed.gt_label) == inner.get_data_info(
            split['labelled'][i])['gt_label']
    for i in (n_lab, 39):
        assert 'gt_label' not in ds[i]['data_samples']
        assert 'gt_label' not in ds.get_data_info(i)
    orig = inner.get_data_info(split['unlabelled'][0])['img']
    assert np.array_equal(ds.get_data_info(n_lab)['img'], orig)


def test_dataset_errors_name_the_file_and_the_tool(tmp_path):
    write_fashion_idx(str(tmp_path / 'fm'), n=48)
    with pytest.raises(FileNotFoundError, match='make_semi_split.py'):
        SemiSplitDataset(
            fmnist(tmp_path / 'fm'), str(tmp_path / 'none.json'), fraction=0.2)
    split_file = str(tmp_path / 'split.json')
    write_split(split_file, np.arange(40) % 10, 0.2, seed=0)
    for kwargs in (dict(fraction=0.3), dict(fraction=0.2, seed=1)):
        with pytest.raises(ValueError, match='split_file.*holds'):
            SemiSplitDataset(fmnist(tmp_path / 'fm'), split_file, **kwargs)
    write_split(split_file, np.arange(30) % 10, 0.2, seed=0)  # another size
    with pytest.raises(ValueError, match="'num_samples': 30"):
        SemiSplitDataset(fmnist(tmp_path / 'fm'), split_file, fraction=0.2)


def test_multi_source_sampler_mixes_a_fixed_ratio_from_the_mmpretrain_scope(
        tmp_path):
    write_fashion_idx(str(tmp_path / 'fm'), n=48)
    split_file = str(tmp_path / 'split.json')
    write_split(split_file, np.arange(40) % 10, 0.5, seed=0)
    ds = SemiSplitDataset(fmnist(tmp_path / 'fm'), split_file, fraction=0.5)
    init_default_scope('mmpretrain')
    sampler = DATA_SAMPLERS.build(
        dict(
            type='mmdet.MultiSourceSampler', batch_size=8, source_ratio=[1,
                                                                         3]),
        default_args=dict(dataset=ds, seed=0))
    it = iter(sampler)
    for _ in range(6):
        batch = [next(it) for _ in range(8)]
        assert all(i < 20 for i in batch[:2]) and all(20 <= i < 40
                                                      for i in batch[2:])


def run_tool(cwd, root, *extra):
    opts = [
        f'train_dataloader.dataset.dataset.data_root={root}',
        'train_dataloader.dataset.dataset.max_samples=30',
        'train_dataloader.dataset.dataset.val_size=8',
        'train_dataloader.dataset.split_file=splits/s.json'
    ]
    return subprocess.run(
        [sys.executable, TOOL, SEMI_CFG, *extra, '--cfg-options', *opts],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300)


def test_tool_writes_the_split_of_the_config_once(tmp_path):
    labels = np.arange(48) % 5
    write_fashion_idx(str(tmp_path / 'fm'), n=48, labels=labels)
    out = run_tool(tmp_path, tmp_path / 'fm')
    assert out.returncode == 0, out.stderr[-2000:]
    split = json.load(open(tmp_path / 'splits' / 's.json'))
    assert (split['fraction'], split['seed'], split['num_samples']) == (0.2, 0,
                                                                        30)
    from cds_mm.datasets import FashionMNISTIDX
    inner = FashionMNISTIDX(str(tmp_path / 'fm'), val_size=8, max_samples=30)
    lab, unl = stratified_split([d['gt_label'] for d in inner], 0.2, seed=0)
    assert (split['labelled'], split['unlabelled']) == (lab.tolist(),
                                                        unl.tolist())
    assert f'{len(lab)} labelled + {len(unl)} unlabelled of 30' in out.stdout
    mtime = osp.getmtime(tmp_path / 'splits' / 's.json')
    again = run_tool(tmp_path, tmp_path / 'fm')
    assert again.returncode == 0 and 'kept' in again.stdout
    assert osp.getmtime(tmp_path / 'splits' / 's.json') == mtime
    other = run_tool(tmp_path, tmp_path / 'fm', '--cfg-options',
                     'train_dataloader.dataset.fraction=0.5')
    assert other.returncode != 0 and '--overwrite' in other.stderr
