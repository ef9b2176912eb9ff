import pytest
import torch
import torch.nn.functional as F

from cds_mm.models.heads import CDSHead
from cds_mm.models.losses import SupConLoss


def feats(n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [
        torch.randn(n, 8, 8, 8, generator=g),
        torch.randn(n, 16, 4, 4, generator=g)
    ]


def make(mode='cds', **kwargs):
    torch.manual_seed(0)
    return CDSHead(
        taps=['a', 'b'],
        in_channels=[8, 16],
        mode=mode,
        num_classes=3 if mode == 'dsn' else None,
        **kwargs).eval()


def test_paper_projector_widths_follow_last_tap():
    head = make()
    assert [p.out_channels for p in head.projectors] == [16, 16]
    z = head(feats())
    assert [tuple(t.shape) for t in z] == [(4, 16), (4, 16)]
    torch.testing.assert_close(z[0].norm(dim=1), torch.ones(4))


def test_cds_loss_is_weighted_supcon_of_both_views():
    head = make(loss_weight=[0.1, 0.3])
    f1, f2 = feats(seed=0), feats(seed=1)
    labels = torch.tensor([0, 1, 1, 2])
    losses = head.loss(f1, f2, labels)
    ref = SupConLoss(temperature=0.07)
    for i, w in enumerate([0.1, 0.3]):
        z = torch.stack([
            F.normalize(head.projectors[i](f1[i]), dim=1),
            F.normalize(head.projectors[i](f2[i]), dim=1)
        ],
                        dim=1)
        torch.testing.assert_close(losses[f'loss_cds_s{i}'],
                                   w * ref(z, labels))


def test_loss_by_projections_takes_prefix_weight_and_rows():
    head = make(loss_weight=[0.1, 0.3])
    f1, f2 = feats(n=6, seed=0), feats(n=6, seed=1)
    labels = torch.tensor([0, 1, 1, 2, 2, 0])
    z1, z2 = head.project_views(f1, f2)
    assert [tuple(z.shape) for z in z1 + z2] == [(6, 16)] * 4
    for i, proj in enumerate(head.projectors):  # each view through its own tap
        torch.testing.assert_close(z1[i], F.normalize(proj(f1[i]), dim=1))
        torch.testing.assert_close(z2[i], F.normalize(proj(f2[i]), dim=1))
    full = head.loss_by_projections(z1, z2, labels)
    assert sorted(full) == ['loss_cds_s0', 'loss_cds_s1']
    for i, w in enumerate([0.1, 0.3]):
        ref = SupConLoss(temperature=0.07)(torch.stack([z1[i], z2[i]], 1),
                                           labels)
        torch.testing.assert_close(full[f'loss_cds_s{i}'], w * ref)
    head.set_weight_scale(0.5)
    torch.testing.assert_close(
        head.loss_by_projections(z1, z2, labels)['loss_cds_s1'],
        0.5 * full['loss_cds_s1'])
    head.set_weight_scale(1.0)
    rows = [1, 2, 4]
    part = head.loss_by_projections([z[rows] for z in z1],
                                    [z[rows] for z in z2],
                                    None,
                                    prefix='loss_unsup',
                                    weight=2.0)
    assert sorted(part) == ['loss_unsup_s0', 'loss_unsup_s1']
    ref = SupConLoss(temperature=0.07)
    z = torch.stack([z1[1][rows], z2[1][rows]], dim=1)
    torch.testing.assert_close(part['loss_unsup_s1'], 2.0 * 0.3 * ref(z, None))


def test_use_labels_false_is_simclr():
    head = make(use_labels=False)
    f1, f2 = feats(seed=0), feats(seed=1)
    with_labels = make().loss(f1, f2, torch.zeros(4, dtype=torch.long))
    without = head.loss(f1, f2, torch.zeros(4, dtype=torch.long))
    simclr = make().loss(f1, f2, None)
    torch.testing.assert_close(without['loss_cds_s0'], simclr['loss_cds_s0'])
    assert without['loss_cds_s0'] != with_labels['loss_cds_s0']


def test_dsn_is_ce_of_auxiliary_classifiers_on_view1():
    head = make('dsn')
    f1 = feats()
    labels = torch.tensor([0, 1, 2, 2])
    losses = head.loss(f1, labels=labels)
    logits = head.classifiers[1](head.projectors[1](f1[1]))
    torch.testing.assert_close(losses['loss_dsn_s1'],
                               0.1 * F.cross_entropy(logits, labels))
    with pytest.raises(ValueError, match='labels'):
        head.loss(f1)


def test_off_has_no_parameters_and_no_loss():
    head = make('off')
    assert list(head.parameters()) == []
    assert head.loss(feats(), feats()) == {}


def test_views_of_different_size_are_projected_separately():
    head = make()
    small = [f[..., :4, :4] for f in feats()]
    out = head.loss(feats(), small, torch.arange(4))
    assert all(torch.isfinite(v) for v in out.values())


@pytest.mark.parametrize('kwargs,match', [
    (dict(mode='x'), 'mode'),
    (dict(in_channels=None), 'in_channels is None'),
    (dict(in_channels=[8]), 'in_channels has 1 entries'),
    (dict(loss_weight=[0.1]), 'loss_weight has 1 entries'),
    (dict(mode='dsn'), 'num_classes'),
    (dict(projector=[dict(type='MLPProjector')]), '1 projector configs'),
])
def test_bad_config(kwargs, match):
    cfg = dict(taps=['a', 'b'], in_channels=[8, 16])
    cfg.update(kwargs)
    with pytest.raises(ValueError, match=match):
        CDSHead(**cfg)


def test_channel_mismatch_names_the_tap():
    head = make()
    bad = [torch.randn(4, 9, 8, 8), torch.randn(4, 16, 4, 4)]
    with pytest.raises(ValueError, match="tap 'a'.*says 8 channels"):
        head.loss(bad, bad, None)
