import math

import pytest
import torch

from cds_mm.models.losses import KDLoss


def test_matches_a_hand_computed_case():
    s = torch.tensor([[1.0, 0.0, -1.0]])
    t = torch.tensor([[0.0, 2.0, 0.0]])
    T = 2.0
    p_s = [math.exp(v / T) for v in (1.0, 0.0, -1.0)]
    p_t = [math.exp(v / T) for v in (0.0, 2.0, 0.0)]
    p_s = [v / sum(p_s) for v in p_s]
    p_t = [v / sum(p_t) for v in p_t]
    kl = sum(pt * math.log(pt / ps) for pt, ps in zip(p_t, p_s))
    loss = KDLoss(temperature=T, loss_weight=0.5)(s, t)
    assert loss.item() == pytest.approx(0.5 * T * T * kl, rel=1e-5)


def test_zero_for_equal_logits_and_mean_over_samples():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(6, 10, generator=g), torch.randn(6, 10, generator=g)
    kd = KDLoss(temperature=3.0)
    assert kd(t, t).abs().item() < 1e-6
    per_sample = torch.stack([kd(s[i:i + 1], t[i:i + 1]) for i in range(6)])
    torch.testing.assert_close(kd(s, t), per_sample.mean())


def test_t_squared_keeps_the_gradient_scale_at_high_temperature():
    g = torch.Generator().manual_seed(0)
    s = torch.randn(64, 10, generator=g, requires_grad=True)
    t = torch.randn(64, 10, generator=g)
    norms = []
    for T in (4.0, 16.0):
        (grad, ) = torch.autograd.grad(KDLoss(temperature=T)(s, t), s)
        norms.append(grad.norm().item())
    # without T^2 the gradient would shrink ~T^2 = 16x between the two
    assert norms[1] / norms[0] > 0.1


def test_bad_input_is_named():
    with pytest.raises(ValueError, match='temperature'):
        KDLoss(temperature=0)
    with pytest.raises(ValueError, match='same classes'):
        KDLoss()(torch.zeros(2, 5), torch.zeros(2, 6))
