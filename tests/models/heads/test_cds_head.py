import copy

import pytest
import torch
import torch.nn.functional as F

from cds_mm.models.heads import CDSHead
from cds_mm.models.heads.cds_head import project_views
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


def _joint_norm_reference(proj, views):
    """The paper projector on views of different sizes, written out: every
    layer on each view alone, except that each BatchNorm (train mode)
    normalises with the mean and biased variance of all views' values per
    channel; then global average pooling."""
    xs = list(views)
    for block in proj.blocks:
        for layer in block:
            if isinstance(layer, torch.nn.BatchNorm2d):
                flat = torch.cat(
                    [x.transpose(0, 1).reshape(x.shape[1], -1) for x in xs],
                    dim=1)
                mean, var = flat.mean(1), flat.var(1, unbiased=False)
                xs = [(x - mean[:, None, None]) /
                      torch.sqrt(var[:, None, None] + layer.eps) *
                      layer.weight[:, None, None] + layer.bias[:, None, None]
                      for x in xs]
            else:
                xs = [layer(x) for x in xs]
    return [x.mean(dim=(2, 3)) for x in xs]


def test_views_of_different_size_share_the_projectors_norms():
    head = make().train()
    small = [f[..., :4, :4] for f in feats()]
    out = head.loss(feats(), small, torch.arange(4))
    assert all(torch.isfinite(v) for v in out.values())
    z1, z2 = head.project_views(feats(), small)
    for i, proj in enumerate(head.projectors):
        r1, r2 = _joint_norm_reference(proj, [feats()[i], small[i]])
        torch.testing.assert_close(z1[i], F.normalize(r1, dim=1))
        torch.testing.assert_close(z2[i], F.normalize(r2, dim=1))
    # a norm per view would give other projections
    r1, = _joint_norm_reference(head.projectors[0], [feats()[0]])
    assert not torch.allclose(z1[0], F.normalize(r1, dim=1), atol=1e-3)


def _loss_before_forward_views(head, f1, f2, labels):
    """CDSHead.loss as computed before the projectors took the views apart:
    each tap's projector on torch.cat of both views, every layer in turn."""
    losses = {}
    for i, (proj, a, b) in enumerate(zip(head.projectors, f1, f2)):
        x = torch.cat([a, b])
        for block in proj.blocks:
            x = block(x)
        z = F.normalize(x.mean(dim=(2, 3)), dim=1)
        z = torch.stack([z[:a.shape[0]], z[a.shape[0]:]], dim=1)
        losses[f'loss_cds_s{i}'] = head.loss_weights[i] * head.loss_module(
            z, labels)
    return losses


def test_loss_on_a_fixed_batch_is_unchanged_within_1e5():
    """Projecting the views apart (no input copy, channels-last) gives the
    loss and gradients of the earlier concatenate-then-project head."""
    head = CDSHead(
        taps=['a', 'b', 'c'], in_channels=[8, 16, 32],
        loss_weight=0.1).train()
    ref = copy.deepcopy(head)
    g = torch.Generator().manual_seed(3)
    f1, f2 = ([
        torch.randn(16, c, s, s, generator=g, requires_grad=True)
        for c, s in ((8, 16), (16, 8), (32, 4))
    ] for _ in range(2))
    labels = torch.randint(0, 4, (16, ), generator=g)
    out = head.loss(f1, f2, labels)
    expect = _loss_before_forward_views(ref, f1, f2, labels)
    assert sorted(out) == sorted(expect)
    for k in out:
        torch.testing.assert_close(out[k], expect[k], atol=1e-5, rtol=0)
    grads = torch.autograd.grad(sum(out.values()), f1 + f2)
    ref_grads = torch.autograd.grad(sum(expect.values()), f1 + f2)
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_a_projector_without_forward_views_gets_the_concatenation():

    class Pool(torch.nn.Module):
        calls = []

        def forward(self, x):
            self.calls.append(x.shape[0])
            return x.mean(dim=(2, 3))

    proj = Pool()
    a, b = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    torch.testing.assert_close(
        project_views(proj, [a, b]),
        torch.cat([a, b]).mean(dim=(2, 3)))
    project_views(proj, [a, b[..., :2, :2]])
    assert Pool.calls == [4, 2, 2]


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
