import pytest
import torch
import torch.nn.functional as F

from cds_mm.models.heads import InstanceCDSHead
from cds_mm.models.heads import instance_cds_head as head_module


def make_head(**kwargs):
    torch.manual_seed(0)
    cfg = dict(
        taps=['p2'],
        in_channels=[8],
        projector=dict(type='MLPProjector', hid_channels=16, out_channels=8))
    cfg.update(kwargs)
    return InstanceCDSHead(**cfg).eval()


def boxes_and_labels():
    boxes = [
        torch.tensor([[0., 0., 16., 16.], [20., 4., 40., 30.],
                      [8., 30., 60., 60.]]),
        torch.tensor([[10., 10., 50., 40.]])
    ]
    labels = [torch.tensor([0, 1, 2]), torch.tensor([1])]
    return boxes, labels


def test_boxes_pair_by_their_instance_ids_not_by_position():
    head = make_head()
    feat = torch.randn(2, 8, 16, 16)
    boxes, labels = boxes_and_labels()
    size = ((64, 64), (64, 64))
    right = head.loss([feat], [feat], boxes, boxes, labels,
                      size)['loss_cds_inst_s0']
    order = [2, 0, 1]
    shuffled = [boxes[0][order], boxes[1]]
    ids = ([torch.arange(3),
            torch.arange(1)], [torch.tensor(order),
                               torch.arange(1)])
    by_id = head.loss([feat], [feat], boxes, shuffled, labels, size,
                      ids)['loss_cds_inst_s0']
    torch.testing.assert_close(by_id, right)
    # the same shuffle without ids would be a mispairing: refused
    with pytest.raises(
            ValueError, match='image 0 of the batch.*'
            'coordinate differs'):
        head.loss([feat], [feat], boxes, shuffled, labels, size)


def test_a_box_lost_in_view2_is_left_out_by_id_and_refused_without():
    head = make_head()
    feat = torch.randn(2, 8, 16, 16)
    boxes, labels = boxes_and_labels()
    size = ((64, 64), (64, 64))
    dropped = [boxes[0][[0, 2]], boxes[1]]  # view 2 lost box 1 of image 0
    with pytest.raises(
            ValueError,
            match='image 0 of the batch: view 1 holds '
            '3 boxes and view 2 2'):
        head.loss([feat], [feat], boxes, dropped, labels, size)
    ids = ([torch.arange(3),
            torch.arange(1)], [torch.tensor([0, 2]),
                               torch.arange(1)])
    got = head.loss([feat], [feat], boxes, dropped, labels, size,
                    ids)['loss_cds_inst_s0']
    kept = [boxes[0][[0, 2]], boxes[1]]
    want = head.loss([feat], [feat], kept, kept,
                     [labels[0][[0, 2]], labels[1]], size)['loss_cds_inst_s0']
    torch.testing.assert_close(got, want)


@pytest.mark.parametrize('ids, match', [
    (([torch.arange(3), None], [None, None]), 'instance_ids is set in view 1'),
    (([torch.tensor([0, 0, 1]), None], [torch.arange(3), None
                                        ]), 'repeats an instance id'),
    (([torch.arange(2), None], [torch.arange(3), None]), 'view 1 holds 3 '
     'boxes but instance_ids of shape'),
])
def test_bad_instance_ids_name_the_cause(ids, match):
    boxes, labels = boxes_and_labels()
    with pytest.raises(ValueError, match=match):
        make_head().loss([torch.randn(2, 8, 16, 16)] * 1,
                         [torch.randn(2, 8, 16, 16)], boxes, boxes, labels,
                         ((64, 64), (64, 64)), ids)


def test_a_resized_branch_pairs_by_position_per_axis():
    # one branch resized on the batch (x 0.5 wide, x 2 high): the same boxes
    head = make_head()
    boxes, labels = boxes_and_labels()
    scaled = [b * torch.tensor([0.5, 2., 0.5, 2.]) for b in boxes]
    shapes = ([(64, 64)] * 2, [(128, 32)] * 2)
    rois1, rois2, _ = head._select_boxes(boxes, scaled, labels, None, shapes)
    torch.testing.assert_close(rois2, scaled)
    with pytest.raises(ValueError, match='coordinate differs'):
        head._select_boxes(boxes, scaled, labels, None,
                           ([(64, 64)] * 2, [(32, 128)] * 2))


def test_roi_align_scales_each_axis_and_keeps_boxes_fp32(monkeypatch):
    """A 30 x 64 input (H x W) padded from a non-square image gives a
    8 x 16 map: y scales by 8/30, x by 16/64. The boxes reach RoIAlign in
    fp32 and scaled per axis, also for a bf16 feature."""
    head = make_head(roi_size=2)
    seen = []
    real = head_module.roi_align
    monkeypatch.setattr(
        head_module, 'roi_align', lambda feat, rois, **kw: seen.append(
            (feat.dtype, rois, kw)) or real(feat, rois, **kw))
    # the feature is its own row index: RoIAlign reads the y of each sample
    ramp = torch.arange(8.).view(1, 1, 8, 1).expand(1, 8, 8, 16)
    box = torch.tensor([[8.2, 3.3, 40.1, 26.7]])
    out = head._roi_features(ramp.to(torch.bfloat16), [box], (30, 64))
    (dtype, rois, kw), = seen
    assert dtype == torch.float32 and rois[0].dtype == torch.float32
    assert kw['spatial_scale'] == 1.0
    torch.testing.assert_close(
        rois[0], box * torch.tensor([16 / 64, 8 / 30, 16 / 64, 8 / 30]))
    # bin centres on y (aligned=True): y1 * s - 0.5 + (k + 0.5) * h / 2
    y1, y2 = 3.3 * 8 / 30 - 0.5, 26.7 * 8 / 30 - 0.5
    want = torch.tensor([y1 + (y2 - y1) / 4, y1 + 3 * (y2 - y1) / 4])
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(
        out[0, 0].float().mean(1), want, rtol=0, atol=0.02)


def test_no_boxes_zero_loss_touches_every_parameter():
    head = make_head().train()
    feat = torch.randn(2, 8, 16, 16, requires_grad=True)
    empty = [torch.zeros(0, 4), torch.zeros(0, 4)]
    labels = [torch.zeros(0, dtype=torch.long)] * 2
    loss = head.loss([feat], [feat], empty, empty, labels,
                     ((64, 64), ) * 2)['loss_cds_inst_s0']
    assert loss.item() == 0
    loss.backward()
    assert all(p.grad is not None for p in head.parameters())


def test_weight_and_scale():
    head = make_head(loss_weight=0.5)
    feat = torch.randn(2, 8, 16, 16)
    boxes, labels = boxes_and_labels()
    size = ((64, 64), (64, 64))
    full = head.loss([feat], [feat * 0.5], boxes, boxes, labels,
                     size)['loss_cds_inst_s0']
    head.set_weight_scale(0.5)
    half = head.loss([feat], [feat * 0.5], boxes, boxes, labels,
                     size)['loss_cds_inst_s0']
    torch.testing.assert_close(half, full * 0.5)


@pytest.mark.parametrize('kwargs', [
    dict(in_channels=None),
    dict(in_channels=[8, 8]),
    dict(loss_weight=[1., 2.]),
    dict(roi_size=0),
    dict(max_boxes_per_image=0)
])
def test_bad_config(kwargs):
    with pytest.raises(ValueError, match='instance_head'):
        make_head(**kwargs)


# ---------------------------------------------------------------- one class
def grid_boxes(n, side=12, step=16):
    """``n`` boxes on a grid of ``step`` px cells, each ``side`` px wide."""
    rows = [[x * step, y * step, x * step + side, y * step + side]
            for y in range(8) for x in range(8)][:n]
    return torch.tensor(rows, dtype=torch.float32)


def mean_pair_similarity(z):
    sim = z @ z.t()
    off = ~torch.eye(len(z), dtype=torch.bool)
    return sim[off].mean().item()


def test_one_class_batch_falls_back_to_simclr_once_warned(monkeypatch):
    calls = []
    monkeypatch.setattr(head_module, 'print_log',
                        lambda *a, **k: calls.append(a[0]))
    feat = torch.randn(1, 8, 32, 32)
    boxes, one_class = [grid_boxes(6)], [torch.zeros(6, dtype=torch.long)]
    size = ((128, 128), (128, 128))
    got = make_head().loss([feat], [feat * 0.5], boxes, boxes, one_class,
                           size)['loss_cds_inst_s0']
    simclr = make_head(use_labels=False).loss([feat], [feat * 0.5], boxes,
                                              boxes, one_class,
                                              size)['loss_cds_inst_s0']
    torch.testing.assert_close(got, simclr)
    two_class = [torch.tensor([0, 0, 0, 1, 1, 1])]
    supcon = make_head().loss([feat], [feat * 0.5], boxes, boxes, two_class,
                              size)['loss_cds_inst_s0']
    assert abs(supcon.item() - simclr.item()) > 1e-3  # labels used there
    head = make_head()
    for _ in range(2):
        head.loss([feat], [feat], boxes, boxes, one_class, size)
    assert len(calls) == 2  # one per head: the two one-class heads above
    assert all('instance_head.use_labels' in c for c in calls)


def test_one_class_gradient_separates_boxes():
    """A gradient step on the box embeddings of a one-class batch makes
    different boxes less alike (SupCon there would pull them together)."""
    head = make_head(loss_weight=1.0)
    outs = []
    head.projectors[0].register_forward_hook(
        lambda m, args, out: outs.append(out) or out.retain_grad())
    feat = torch.randn(1, 8, 32, 32)
    boxes, labels = [grid_boxes(8, side=10, step=14)], [torch.zeros(8).long()]
    head.loss([feat], [feat * 0.9], boxes, boxes, labels,
              ((128, 128), (128, 128)))['loss_cds_inst_s0'].backward()
    (z, ) = outs  # (2 * 8, D): view 1, then view 2
    stepped = z.detach() - 0.5 * z.grad
    before = mean_pair_similarity(F.normalize(z.detach()[:8], dim=1))
    after = mean_pair_similarity(F.normalize(stepped[:8], dim=1))
    assert before > 0.5 and after < before - 0.2, (before, after)


# ---------------------------------------------------------------- dense scenes
def dense(n_per_image=200, n_images=2):
    """``n_per_image`` small boxes per image; view 2 shifted by 1 px, so a box
    and its partner differ by exactly (1, 1, 1, 1) (paired by instance ids).
    Box ``i`` of image ``j`` has label ``1000 * j + i``, which tells which
    boxes were kept."""
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(n_images, n_per_image, 2, generator=g) * 100
    boxes = [torch.cat([p, p + 8], dim=1) for p in xy]
    labels = [1000 * j + torch.arange(n_per_image) for j in range(n_images)]
    return boxes, [b + 1 for b in boxes], labels


def same_ids(boxes):
    """Instance ids of both views: box i of view 1 is box i of view 2."""
    ids = [torch.arange(len(b)) for b in boxes]
    return ids, ids


def test_dense_image_samples_same_boxes_in_both_views():
    head = make_head(max_boxes_per_image=50)
    boxes, shifted, labels = dense(200)
    torch.manual_seed(3)
    rois1, rois2, ids = head._select_boxes(boxes, shifted, labels,
                                           same_ids(boxes))
    assert [len(r) for r in rois1] == [50, 50] == [len(r) for r in rois2]
    for j, (r1, r2, b) in enumerate(zip(rois1, rois2, boxes)):
        kept = ids[50 * j:50 * (j + 1)] - 1000 * j
        assert len(set(kept.tolist())) == 50
        torch.testing.assert_close(r1, b[kept])  # labels follow boxes
        torch.testing.assert_close(r2, b[kept] + 1)  # same boxes in view 2
    # seeded from torch's RNG: the same seed, the same boxes; another, others
    torch.manual_seed(3)
    torch.testing.assert_close(
        head._select_boxes(boxes, shifted, labels, same_ids(boxes))[2], ids)
    torch.manual_seed(4)
    assert not torch.equal(
        head._select_boxes(boxes, shifted, labels, same_ids(boxes))[2], ids)


def test_below_the_limit_every_box_is_kept_in_order():
    head = make_head(max_boxes_per_image=50)
    boxes, shifted, labels = dense(50)
    rois1, rois2, ids = head._select_boxes(boxes, shifted, labels,
                                           same_ids(boxes))
    torch.testing.assert_close(ids, torch.cat(labels))
    torch.testing.assert_close(rois1, boxes)


def test_dense_batch_of_200_boxes_per_image_is_bounded():
    rows = []
    head = make_head().train()
    head.projectors[0].register_forward_hook(
        lambda m, args, out: rows.append(args[0].shape[0]))
    boxes, shifted, labels = dense(200)
    labels = [lb % 3 for lb in labels]
    feat = torch.randn(2, 8, 32, 32, requires_grad=True)
    loss = head.loss([feat], [feat],
                     boxes, shifted, labels, ((128, 128), (128, 128)),
                     same_ids(boxes))['loss_cds_inst_s0']
    loss.backward()
    limit = head.max_boxes_per_image  # the default
    assert limit is not None and limit < 200
    assert rows == [2 * 2 * limit]  # 2 images x 2 views, in one projector call
    assert loss.item() > 0 and torch.isfinite(feat.grad).all()
    head.max_boxes_per_image = None
    head.loss([feat], [feat], boxes, shifted, labels, ((128, 128), (128, 128)),
              same_ids(boxes))
    assert rows[-1] == 2 * 2 * 200


# ------------------------------------------------------- collapse diagnostic
def logged_cos(head, feat, boxes, labels):
    from mmengine.logging import MessageHub
    hub = MessageHub.get_current_instance()
    hub.log_scalars.pop('train/cds_inst_cos_s0', None)
    head.loss([feat], [feat], boxes, boxes, labels, ((128, 128), (128, 128)))
    buf = hub.log_scalars.get('train/cds_inst_cos_s0')
    return None if buf is None else buf.current()


def test_box_similarity_is_logged_in_training_only():
    """The mean cosine between different boxes' projections is logged as
    train/cds_inst_cos_s0: 1 when every box looks the same, lower for
    different boxes, nothing in eval mode or with a single box."""
    head = make_head().train()
    boxes, labels = [grid_boxes(8, side=10, step=14)], [torch.zeros(8).long()]
    same = torch.ones(1, 8, 32, 32)
    assert logged_cos(head, same, boxes, labels) == pytest.approx(1.0)
    torch.manual_seed(1)
    varied = logged_cos(head, torch.randn(1, 8, 32, 32), boxes, labels)
    assert varied < 0.9
    # the value is the mean over pairs i != j of view-1 projections
    outs = []
    head.projectors[0].register_forward_hook(
        lambda m, args, out: outs.append(out))
    torch.manual_seed(1)
    got = logged_cos(head, torch.randn(1, 8, 32, 32), boxes, labels)
    assert got == pytest.approx(
        mean_pair_similarity(F.normalize(outs[0][:8], dim=1)), abs=1e-5)
    assert logged_cos(head.eval(), same, boxes, labels) is None
    one = [grid_boxes(1)]
    assert logged_cos(head.train(), same, one, [torch.zeros(1).long()]) is None
