import pytest
import torch

from cds_mm.models.heads import InstanceCDSHead


def make_head(**kwargs):
    torch.manual_seed(0)
    cfg = dict(taps=['p2'], in_channels=[8],
               projector=dict(type='MLPProjector', hid_channels=16, out_channels=8))
    cfg.update(kwargs)
    return InstanceCDSHead(**cfg).eval()


def boxes_and_labels():
    boxes = [torch.tensor([[0., 0., 16., 16.], [20., 4., 40., 30.], [8., 30., 60., 60.]]),
             torch.tensor([[10., 10., 50., 40.]])]
    labels = [torch.tensor([0, 1, 2]), torch.tensor([1])]
    return boxes, labels


def test_box_correspondence_matters():
    head = make_head()
    feat = torch.randn(2, 8, 16, 16)
    boxes, labels = boxes_and_labels()
    size = ((64, 64), (64, 64))
    right = head.loss([feat], [feat], boxes, boxes, labels, size)['loss_cds_inst_s0']
    shuffled = [boxes[0][[2, 0, 1]], boxes[1]]
    wrong = head.loss([feat], [feat], boxes, shuffled, labels, size)['loss_cds_inst_s0']
    assert right < wrong


def test_image_with_mismatched_box_counts_is_skipped():
    head = make_head()
    feat = torch.randn(2, 8, 16, 16)
    boxes, labels = boxes_and_labels()
    size = ((64, 64), (64, 64))
    dropped = [boxes[0][:2], boxes[1]]  # view 2 lost a box of image 0
    got = head.loss([feat], [feat], boxes, dropped, labels, size)['loss_cds_inst_s0']
    only1 = head.loss([feat[1:]], [feat[1:]], boxes[1:], boxes[1:], labels[1:],
                      size)['loss_cds_inst_s0']
    torch.testing.assert_close(got, only1)


def test_no_boxes_zero_loss_touches_every_parameter():
    head = make_head().train()
    feat = torch.randn(2, 8, 16, 16, requires_grad=True)
    empty = [torch.zeros(0, 4), torch.zeros(0, 4)]
    labels = [torch.zeros(0, dtype=torch.long)] * 2
    loss = head.loss([feat], [feat], empty, empty, labels, ((64, 64),) * 2)['loss_cds_inst_s0']
    assert loss.item() == 0
    loss.backward()
    assert all(p.grad is not None for p in head.parameters())


def test_weight_and_scale():
    head = make_head(loss_weight=0.5)
    feat = torch.randn(2, 8, 16, 16)
    boxes, labels = boxes_and_labels()
    size = ((64, 64), (64, 64))
    full = head.loss([feat], [feat * 0.5], boxes, boxes, labels, size)['loss_cds_inst_s0']
    head.set_weight_scale(0.5)
    half = head.loss([feat], [feat * 0.5], boxes, boxes, labels, size)['loss_cds_inst_s0']
    torch.testing.assert_close(half, full * 0.5)


@pytest.mark.parametrize('kwargs', [dict(in_channels=None), dict(in_channels=[8, 8]),
                                    dict(loss_weight=[1., 2.]), dict(roi_size=0)])
def test_bad_config(kwargs):
    with pytest.raises(ValueError, match='instance_head'):
        make_head(**kwargs)
