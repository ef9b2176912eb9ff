"""The batch colour augment (``view2_batch_augments``) in the classifier's
and the detector's preprocessors: view 2 (branch ``'cds'``) only, training
only, on the preprocessor's device, before normalisation; the detector's
deprecated ``BranchBatchAugmentsDataPreprocessor`` gives the same."""
import logging

import pytest
import torch
from cds_test_utils import build_cls, build_det

import cds_mm  # noqa: F401

MEAN, STD = [10., 20., 30.], [50., 60., 70.]
COLOUR = dict(
    type='BatchPhotometric',
    transforms=[
        dict(
            type='RandomApply',
            prob=0.8,
            transforms=[
                dict(
                    type='ColorJitter',
                    brightness=0.4,
                    contrast=0.4,
                    saturation=0.4,
                    hue=0.1)
            ]),
        dict(type='RandomGrayscale', prob=0.5, keep_channels=True),
    ])
N = 6


def _views(size=16):
    g = torch.Generator().manual_seed(0)
    return [
        torch.randint(
            0, 256, (N, 3, size, size), generator=g, dtype=torch.uint8)
        for _ in range(2)
    ]


def _cls(view2_batch_augments=COLOUR):
    return build_cls(
        dict(
            type='MultiViewClsDataPreprocessor',
            data_preprocessor=dict(mean=MEAN, std=STD, to_rgb=True),
            view2_batch_augments=view2_batch_augments))


@pytest.mark.parametrize('collate', ['pseudo', 'default'])
def test_classifier_view2_is_colour_augmented_in_training_only(collate):
    pre = _cls().to('cpu')  # moves like any module
    inner, aug = pre.data_preprocessor, pre.view2_batch_augments
    view1, view2 = _views()
    if collate == 'pseudo':
        data = dict(inputs=[list(view1), list(view2)])
    else:
        data = dict(inputs=[view1, view2])

    torch.manual_seed(7)
    got = pre(dict(data), True)['inputs']
    torch.manual_seed(7)
    want2 = inner(dict(inputs=aug(view2)), False)['inputs']
    plain = [inner(dict(inputs=v), False)['inputs'] for v in (view1, view2)]
    torch.testing.assert_close(got[0], plain[0])
    torch.testing.assert_close(got[1], want2)
    assert not torch.allclose(got[1], plain[1])  # the colour acted

    evaluated = pre(dict(data), False)['inputs']
    torch.testing.assert_close(evaluated[1], plain[1])
    single = pre(dict(inputs=view1), True)['inputs']  # mode='off' pipelines
    torch.testing.assert_close(single, plain[0])


def test_classifier_key_errors_name_the_key():
    with pytest.raises(ValueError, match='view2_batch_augments'):
        _cls(view2_batch_augments=[COLOUR])
    with pytest.raises(KeyError, match='NoSuchAugment'):
        _cls(view2_batch_augments=dict(type='NoSuchAugment'))


DET_INNER = dict(
    type='DetDataPreprocessor',
    mean=MEAN,
    std=STD,
    bgr_to_rgb=True,
    pad_size_divisor=32)


def _det(view2_batch_augments, **kwargs):
    return build_det(
        dict(
            type='MultiViewDetDataPreprocessor',
            data_preprocessor=DET_INNER,
            view2_batch_augments=view2_batch_augments,
            **kwargs))


def _det_alias(branch_batch_augments):
    return build_det(
        dict(
            type='BranchBatchAugmentsDataPreprocessor',
            data_preprocessor=DET_INNER,
            branch_batch_augments=branch_batch_augments))


# the same preprocessor, by its name and by the deprecated one
DET_BUILDS = dict(
    view2_batch_augments=lambda: _det(COLOUR),
    branch_batch_augments=lambda: _det_alias(dict(cds=COLOUR)))


def _det_batch():
    from mmdet.structures import DetDataSample
    g = torch.Generator().manual_seed(1)
    sizes = [(3, 40, 48), (3, 48, 40), (3, 40, 48)]  # unequal: padded
    main = [
        torch.randint(0, 256, s, generator=g, dtype=torch.uint8) for s in sizes
    ]
    cds = [img.clone() for img in main]

    def samples():
        return [
            DetDataSample(metainfo=dict(img_shape=s[1:], pad_shape=s[1:]))
            for s in sizes
        ]

    return dict(
        inputs=dict(main=main, cds=cds),
        data_samples=dict(main=samples(), cds=samples()))


@pytest.mark.parametrize('key', sorted(DET_BUILDS))
def test_detector_cds_branch_is_colour_augmented_in_training_only(key):
    pre = DET_BUILDS[key]().to('cpu')
    plain = _det(None)
    torch.manual_seed(3)
    got = pre(_det_batch(), True)
    want = plain(_det_batch(), True)
    torch.testing.assert_close(got['inputs']['main'], want['inputs']['main'])
    assert not torch.allclose(got['inputs']['cds'], want['inputs']['cds'])

    torch.manual_seed(3)
    colour = pre.view2_batch_augments(_det_batch()['inputs']['cds'])
    batch = _det_batch()
    batch['inputs']['cds'] = colour
    torch.testing.assert_close(got['inputs']['cds'],
                               plain(batch, True)['inputs']['cds'])

    test_batch = dict(
        inputs=_det_batch()['inputs']['main'],
        data_samples=_det_batch()['data_samples']['main'])
    torch.testing.assert_close(
        pre(dict(test_batch), False)['inputs'],
        plain(dict(test_batch), False)['inputs'])


def test_detector_view2_branch_picks_the_branch():
    pre = _det(COLOUR, view2_branch='main')
    plain = _det(None)
    torch.manual_seed(3)
    got = pre(_det_batch(), True)['inputs']
    want = plain(_det_batch(), True)['inputs']
    torch.testing.assert_close(got['cds'], want['cds'])
    assert not torch.allclose(got['main'], want['main'])


def test_detector_keeps_samples_without_view2_in_place():
    batch = _det_batch()
    batch['inputs']['cds'][1] = None
    torch.manual_seed(3)
    got = _det(COLOUR)._augment(batch['inputs']['cds'])
    assert got[1] is None
    torch.manual_seed(3)
    rows = [_det_batch()['inputs']['cds'][i] for i in (0, 2)]
    want = _det(COLOUR).view2_batch_augments(rows)
    torch.testing.assert_close([got[0], got[2]], want)


def test_detector_names_a_missing_branch():
    with pytest.raises(ValueError, match=r"view2_branch='view2' .*\['cds'"):
        _det(COLOUR, view2_branch='view2')(_det_batch(), True)
    with pytest.raises(ValueError, match='view2_batch_augments must be'):
        _det([COLOUR])
    with pytest.raises(ValueError, match='view2_branch must be'):
        _det(COLOUR, view2_branch=['cds'])
    with pytest.raises(ValueError, match='branch_batch_augments.view2 names'):
        _det_alias(dict(view2=COLOUR))(_det_batch(), True)
    with pytest.raises(ValueError, match='branch_batch_augments.cds must be'):
        _det_alias(dict(cds=[COLOUR]))
    with pytest.raises(ValueError, match=r"one branch.*\['cds', 'main'\]"):
        _det_alias(dict(cds=COLOUR, main=COLOUR))


def test_deprecated_detector_preprocessor_warns_and_matches(monkeypatch):
    from cds_mm.models.data_preprocessors import \
        branch_batch_augments_data_preprocessor as alias
    logs = []

    def record(msg, **kwargs):
        logs.append((msg, kwargs['level']))

    monkeypatch.setattr(alias, 'print_log', record)
    old, new = DET_BUILDS['branch_batch_augments'](), _det(COLOUR)
    assert len(logs) == 1
    msg, level = logs[0]
    assert level == logging.WARNING
    for name in ('deprecated', 'MultiViewDetDataPreprocessor',
                 'view2_batch_augments', 'branch_batch_augments'):
        assert name in msg, (name, msg)
    assert isinstance(old, type(new)) and old.view2_branch == 'cds'
    outs = []
    for pre in (old, new):
        torch.manual_seed(3)
        outs.append(pre(_det_batch(), True)['inputs'])
    torch.testing.assert_close(outs[0], outs[1])
    # checkpoints of either load into the other
    assert list(old.state_dict()) == list(new.state_dict())
    new.load_state_dict(old.state_dict(), strict=True)
    assert _det_alias(None).view2_batch_augments is None
