"""The semi-supervised and distilled CDS demo configs through the real CLI
(CPU, 2 iterations).

Semi: ``make_semi_split.py`` then ``tools/train.py`` (SemiSplitDataset +
    mmdet's
MultiSourceSampler + SemiCDSClassifier in the Runner). Distilled: a teacher
trained and exported with our tools, then the student config with that export.
"""
import os.path as osp
import sys

from cds_test_utils import (ENV, REPO_ROOT, TINY, finish, popen_logged,
                            popen_train, scalars, write_fashion_idx)

DEMO = osp.join(REPO_ROOT, 'configs', 'demo')
TOOLS = osp.join(REPO_ROOT, 'tools')
DATA = """
ds = dict(data_root={root!r}, val_size=8)
val_dataloader = dict(num_workers=0, persistent_workers=False, dataset=dict(ds, max_samples=8))
test_dataloader = dict(num_workers=0, persistent_workers=False, dataset=ds)
"""  # noqa: E501
SEMI = DATA + """
train_dataloader = dict(batch_size=8, num_workers=0, persistent_workers=False,
                        sampler=dict(batch_size=8),
                        dataset=dict(split_file={split!r}, dataset=ds))
"""
EPOCH_DATA = DATA + """
train_dataloader = dict(batch_size=8, num_workers=0, persistent_workers=False,
                        dataset=dict(ds, max_samples=16))
"""


def write_cfg(path, base, data_text, iters=2, **fmt):
    path.write_text(
        TINY.format(base=base, iters=iters, randomness='dict(seed=0)') +
        data_text.format(**fmt))
    return path


def test_semi_config_splits_and_trains_with_both_losses(tmp_path):
    write_fashion_idx(str(tmp_path / 'fm'), n=48)
    cfg = write_cfg(
        tmp_path / 'semi.py',
        osp.join(DEMO, 'resnet18-w16_semi-cds-20p_fashionmnist.py'),
        SEMI,
        root=str(tmp_path / 'fm'),
        split=str(tmp_path / 'split.json'))
    finish(
        popen_logged([
            sys.executable,
            osp.join(TOOLS, 'dataset_converters', 'make_semi_split.py'),
            str(cfg)
        ], tmp_path, ENV))
    finish(popen_train(cfg, tmp_path / 'work'))
    logged = scalars(str(tmp_path / 'work'))
    assert sorted(logged) == [1, 2]
    for key in ('loss_cls', 'loss_cds_s0', 'loss_unsup_s3'):
        assert logged[2][key] > 0, key
    assert osp.isfile(tmp_path / 'work' / 'iter_2.pth')


def test_distilled_config_trains_from_an_exported_teacher(tmp_path):
    write_fashion_idx(str(tmp_path / 'fm'), n=48)
    root = str(tmp_path / 'fm')
    teacher_cfg = write_cfg(
        tmp_path / 'teacher.py',
        osp.join(DEMO, 'resnet50-w16_cds_1xb128_fashionmnist.py'),
        EPOCH_DATA,
        root=root)
    finish(popen_train(teacher_cfg, tmp_path / 'teacher'))
    export = tmp_path / 'teacher' / 'export'
    finish(
        popen_logged([
            sys.executable,
            osp.join(TOOLS, 'export_plain.py'),
            str(teacher_cfg),
            str(tmp_path / 'teacher' / 'iter_2.pth'), '--out-dir',
            str(export)
        ], tmp_path, ENV))
    student_cfg = write_cfg(
        tmp_path / 'student.py',
        osp.join(DEMO, 'resnet18-w16_distilled-cds_r50-w16_fashionmnist.py'),
        EPOCH_DATA,
        root=root)
    finish(
        popen_train(student_cfg, tmp_path / 'student', '--cfg-options',
                    f'model.teacher={teacher_cfg}',
                    f'model.teacher_ckpt={export / "plain.pth"}',
                    f'model.teacher_heads_ckpt={export / "heads.pth"}'))
    logged = scalars(str(tmp_path / 'student'))
    for key in ('loss_cls', 'loss_kd', 'loss_cds_s0', 'loss_embed_s3'):
        assert logged[2][key] > 0, key
