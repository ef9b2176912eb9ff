import pytest
import torch
import torch.nn as nn

from cds_mm.models.taps import FeatureTaps


class Net(nn.Module):

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.block = nn.Sequential(
            nn.Conv2d(4, 8, 3, stride=2, padding=1), nn.ReLU())
        self.head = nn.Linear(8, 2)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        x = self.block(self.stem(x))
        return self.head(x.mean((2, 3)))


def test_captures_in_name_order_during_own_forward():
    net = Net()
    taps = FeatureTaps(net, ['block', 'stem'])
    x = torch.randn(2, 3, 8, 8)
    with taps.capture() as feats:
        out = net(x)
    assert net.calls == 1  # the model ran once; the taps only listened
    assert [tuple(f.shape) for f in feats] == [(2, 8, 4, 4), (2, 4, 8, 8)]
    torch.testing.assert_close(feats[1], net.stem(x))
    # the captured tensors are part of the graph: a loss on them trains the
    # stem
    (feats[0].sum() + out.sum()).backward()
    assert net.stem.weight.grad is not None


def test_no_hook_survives_capture_even_on_error():
    net = Net()
    taps = FeatureTaps(net, ['stem'])
    with pytest.raises(ZeroDivisionError):
        with taps.capture():
            net(torch.randn(1, 3, 8, 8))
            1 / 0
    assert not net.stem._forward_hooks
    with taps.capture():
        net(torch.randn(1, 3, 8, 8))
    assert not net.stem._forward_hooks


def test_unknown_name_lists_close_names():
    with pytest.raises(ValueError, match=r"cds_head.taps: 'blok'.*'block'"):
        FeatureTaps(Net(), ['blok'], key='cds_head.taps')


@pytest.mark.parametrize('names', [[], ['stem', 'stem']])
def test_empty_or_repeated_names(names):
    with pytest.raises(ValueError):
        FeatureTaps(Net(), names)


def test_module_not_run_or_run_twice_is_an_error():
    net = Net()
    taps = FeatureTaps(net, ['head'])
    with pytest.raises(RuntimeError, match='ran 0 times'):
        with taps.capture():
            net.stem(torch.randn(1, 3, 8, 8))
    with pytest.raises(RuntimeError, match='ran 2 times'):
        with taps.capture():
            net(torch.randn(1, 3, 8, 8))
            net(torch.randn(1, 3, 8, 8))


def test_frozen_module_rejected():
    net = Net()
    for p in net.stem.parameters():
        p.requires_grad = False
    with pytest.raises(
            ValueError, match="'stem' is a frozen module.*frozen_stages"):
        FeatureTaps(net, ['stem', 'block']).check_trainable()
    FeatureTaps(net, ['block']).check_trainable()


def test_probe_channels_restores_mode_and_needs_no_grad():
    net = Net().train()
    taps = FeatureTaps(net, ['stem', 'block'])
    chans = taps.probe_channels(net, lambda: net(torch.zeros(1, 3, 8, 8)))
    assert chans == [4, 8]
    assert net.training
