import importlib
import math
import os
import socket
from datetime import timedelta

import pytest
import torch
import torch.nn.functional as F

from cds_mm.models.losses import SupConLoss
from cds_mm.models.losses import supcon_loss as supcon_module


def _loop_supcon(feats, labels, t, base_t=None):
    """Slow, line-by-line SupCon (Khosla et al. 2020, eq. 2,
    contrast_mode='all') as reference.

    Rows are taken view-major (all of view 0, then view 1, ...), as in the
    authors' code. Anchors without a positive are skipped; labels=None means
    only a sample's own views are positives.
    """
    n, v, _ = feats.shape
    z = [feats[i, a].double() for a in range(v) for i in range(n)]
    y = [
        i if labels is None else int(labels[i]) for a in range(v)
        for i in range(n)
    ]
    terms = []
    for i in range(len(z)):
        others = [k for k in range(len(z)) if k != i]
        log_denom = math.log(
            sum(math.exp(float(z[i] @ z[k]) / t) for k in others))
        pos = [p for p in others if y[p] == y[i]]
        if pos:
            terms.append(-sum(float(z[i] @ z[p]) / t - log_denom
                              for p in pos) / len(pos))
    return (t / (base_t or t)) * sum(terms) / len(terms) if terms else 0.0


def _feats(seed, n=6, v=2, d=8):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, v, d, generator=g), dim=-1)


LABELS = torch.tensor([0, 0, 1, 1, 2, 3])


@pytest.mark.parametrize('seed', [0, 1, 2])
@pytest.mark.parametrize('v', [2, 3])
@pytest.mark.parametrize('with_labels', [True, False])
def test_matches_loop_reference(seed, v, with_labels):
    feats, labels = _feats(seed, v=v), (LABELS if with_labels else None)
    got = SupConLoss(temperature=0.2)(feats, labels)
    assert got.dtype == torch.float32 and got.shape == ()
    assert got.item() == pytest.approx(
        _loop_supcon(feats, labels, 0.2), rel=1e-5)


def test_base_temperature_scales_loss():
    feats = _feats(3)
    plain = SupConLoss(temperature=0.1)(feats, LABELS)
    scaled = SupConLoss(temperature=0.1, base_temperature=0.07)(feats, LABELS)
    assert scaled.item() == pytest.approx(
        _loop_supcon(feats, LABELS, 0.1, 0.07), rel=1e-5)
    assert scaled.item() == pytest.approx(plain.item() * 0.1 / 0.07, rel=1e-6)


def test_simclr_closed_form():
    # identical orthogonal views: positive logit 1/t, the 2N-2 others 0
    n, t = 4, 0.5
    loss = SupConLoss(temperature=t)(torch.eye(n)[:, None].repeat(1, 2, 1))
    assert loss.item() == pytest.approx(
        math.log(1 + (2 * n - 2) * math.exp(-1 / t)), rel=1e-5)


def test_anchors_without_positive_are_excluded():
    # V=1: samples 2 and 3 are singletons, only the two label-0 anchors count
    feats, labels = _feats(4, n=4, v=1), torch.tensor([0, 0, 1, 2])
    got = SupConLoss(temperature=0.3)(feats, labels)
    assert got.item() == pytest.approx(
        _loop_supcon(feats, labels, 0.3), rel=1e-5)


def test_no_positive_at_all_gives_zero_and_finite_grad():
    feats = _feats(5, n=5, v=1).requires_grad_()
    loss = SupConLoss()(feats, torch.arange(5))
    assert torch.isfinite(loss) and loss.item() == 0.0
    loss.backward()
    assert feats.grad is not None and torch.isfinite(feats.grad).all()
    assert feats.grad.abs().max() == 0


def test_singleton_labels_with_two_views_equal_simclr():
    feats = _feats(6)
    supcon = SupConLoss(temperature=0.1)(feats,
                                         torch.tensor([5, 3, 9, 0, 1, 7]))
    assert supcon.item() == pytest.approx(
        SupConLoss(temperature=0.1)(feats).item(), rel=1e-6)


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_low_precision_inputs_match_fp32(dtype):
    low = _feats(7, n=8, d=16).to(dtype)  # rounded to dtype first
    loss_fn = SupConLoss(temperature=0.05)
    got, ref = loss_fn(low,
                       LABELS.repeat(2)[:8]), loss_fn(low.float(),
                                                      LABELS.repeat(2)[:8])
    assert got.dtype == torch.float32
    assert abs(got.item() - ref.item()) < 1e-3
    assert ref.item() == pytest.approx(
        _loop_supcon(low.float(),
                     LABELS.repeat(2)[:8], 0.05), rel=1e-5)


def test_autocast_bf16_output_is_fp32():
    feats, loss_fn = _feats(8, n=8, d=32), SupConLoss(temperature=0.05)
    labels = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    with torch.autocast('cpu', dtype=torch.bfloat16):
        got = loss_fn(feats, labels)
    assert got.dtype == torch.float32 and torch.isfinite(got)
    # bf16 matmuls would be off by ~1e-2 at t=0.05; fp32 inside matches to
    # rounding
    assert got.item() == pytest.approx(loss_fn(feats, labels).item(), abs=1e-5)


def test_gradient_flows():
    feats = _feats(9).requires_grad_()
    SupConLoss()(feats, LABELS).backward()
    assert feats.grad is not None and torch.isfinite(feats.grad).all()
    assert feats.grad.abs().max() > 0


@pytest.mark.parametrize('kwargs, match',
                         [(dict(temperature=0.0), 'temperature'),
                          (dict(temperature=-1.0), 'temperature'),
                          (dict(base_temperature=0.0), 'base_temperature'),
                          (dict(small_batch='ignore'),
                           r"small_batch.*\('warn', 'raise'\).*'ignore'"),
                          (dict(min_samples=0), 'min_samples')])
def test_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SupConLoss(**kwargs)


def test_bad_inputs_raise():
    loss_fn = SupConLoss()
    with pytest.raises(ValueError, match=r'\(N, V, D\).*\(6, 8\)'):
        loss_fn(torch.randn(6, 8))
    with pytest.raises(
            ValueError, match=r'labels must have shape \(6,\).*\(5,\)'):
        loss_fn(_feats(0), torch.arange(5))
    with pytest.raises(
            ValueError, match=r'labels must have shape \(6,\).*\(6, 1\)'):
        loss_fn(_feats(0), torch.arange(6)[:, None])


def test_small_batch_raise():
    with pytest.raises(ValueError, match='min_samples=4.*batch of 3'):
        SupConLoss(
            min_samples=4, small_batch='raise')(_feats(0, n=3),
                                                torch.tensor([0, 0, 1]))


def test_small_batch_warns_once_and_returns_zero(monkeypatch):
    calls = []
    monkeypatch.setattr(supcon_module, 'print_log',
                        lambda *a, **k: calls.append((a, k)))
    loss_fn = SupConLoss()
    for _ in range(2):
        feats = _feats(0, n=1).requires_grad_()
        loss = loss_fn(feats, torch.tensor([3]))
        loss.backward()
        assert loss.item() == 0.0 and loss.dtype == torch.float32
        assert feats.grad is not None and torch.isfinite(feats.grad).all()
    assert len(calls) == 1 and 'min_samples=2' in calls[0][0][0]
    assert calls[0][1]['level'] == 30  # logging.WARNING


def test_empty_batch_is_a_silent_zero(monkeypatch):
    # an image without boxes gives the instance head no rows: no small-batch
    # warning
    calls = []
    monkeypatch.setattr(supcon_module, 'print_log',
                        lambda *a, **k: calls.append(a))
    feats = torch.zeros(0, 2, 8, requires_grad=True)
    loss = SupConLoss(small_batch='raise')(feats,
                                           torch.zeros(0, dtype=torch.long))
    loss.backward()
    assert loss.item() == 0.0 and feats.grad.shape == (0, 2, 8) and not calls


@pytest.mark.parametrize('scope', ['mmdet', 'mmpretrain'])
def test_registry_build_from_both_scopes(scope):
    registry = importlib.import_module(f'{scope}.registry').MODELS
    loss_fn = registry.build(dict(type='SupConLoss', temperature=0.1))
    assert isinstance(loss_fn, SupConLoss) and loss_fn.temperature == 0.1


# ---------------------------------------------------------------- 2-process
# gloo
def _project(model, x):
    n, v, d = x.shape
    return F.normalize(model(x.reshape(n * v, d)).reshape(n, v, -1), dim=-1)


def _projector():
    torch.manual_seed(0)
    # no BatchNorm: ranks must not interact outside the loss
    return torch.nn.Linear(5, 4)


def _rank_batch(rank, v=2):
    g = torch.Generator().manual_seed(10 + rank)
    # asymmetric across ranks
    x = torch.randn(4, v, 5, generator=g) * (1 + rank) + rank
    labels = torch.tensor([[0, 1, 1, 2], [2, 3, 0, 3]][rank])
    # rank 1: singletons only
    singles = torch.tensor([[0, 0, 1, 1], [10, 11, 12, 13]][rank])
    return x, labels, singles


def _dist_worker(rank, world_size, port, out_dir):
    torch.set_num_threads(1)
    torch.distributed.init_process_group(
        'gloo',
        init_method=f'tcp://127.0.0.1:{port}',
        rank=rank,
        world_size=world_size,
        timeout=timedelta(seconds=30))
    results = {}
    cases = [('gather', True, 2, 1), ('local', False, 2, 1),
             ('singles', True, 1, 2)]
    for name, gather, v, label_col in cases:
        proj = _projector()
        model = torch.nn.parallel.DistributedDataParallel(proj)
        x, labels = _rank_batch(rank, v)[0], _rank_batch(rank, v)[label_col]
        loss = SupConLoss(
            temperature=0.2, gather_distributed=gather)(_project(model, x),
                                                        labels)
        loss.backward()
        results[name] = (loss.detach(),
                         [p.grad.clone() for p in proj.parameters()])
    torch.save(results, os.path.join(out_dir, f'rank{rank}.pt'))
    # both ranks done before the group is torn down
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()


@pytest.fixture(scope='module')
def gloo_results(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp('supcon_gloo')
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    torch.multiprocessing.spawn(
        _dist_worker, args=(2, port, str(out_dir)), nprocs=2)
    return [torch.load(out_dir / f'rank{r}.pt') for r in range(2)]


def _single_process(v, label_col):
    proj = _projector()
    # gather order = rank order
    x = torch.cat([_rank_batch(r, v)[0] for r in range(2)])
    labels = torch.cat([_rank_batch(r, v)[label_col] for r in range(2)])
    loss = SupConLoss(temperature=0.2)(_project(proj, x), labels)
    loss.backward()
    return loss.detach(), [p.grad for p in proj.parameters()]


@pytest.mark.dist
@pytest.mark.parametrize('case, v, label_col', [('gather', 2, 1),
                                                ('singles', 1, 2)])
def test_gather_equals_single_process(gloo_results, case, v, label_col):
    ref_loss, ref_grads = _single_process(v, label_col)
    losses = [res[case][0] for res in gloo_results]
    assert all(torch.isfinite(loss) for loss in losses)
    assert torch.stack(losses).mean().item() == pytest.approx(
        ref_loss.item(), abs=1e-5)
    for res in gloo_results:  # DDP-averaged gradients, identical on both ranks
        for got, ref in zip(res[case][1], ref_grads):
            torch.testing.assert_close(got, ref, atol=1e-5, rtol=0)
    # rank 1 has no positive: its loss is 0 but its backward completed
    if case == 'singles':
        assert losses[1].item() == 0.0 and losses[0].item() > 0


@pytest.mark.dist
def test_without_gather_gradients_differ(gloo_results):
    _, ref_grads = _single_process(2, 1)
    diff = max((got - ref).abs().max().item() for res in gloo_results
               for got, ref in zip(res['local'][1], ref_grads))
    assert diff > 1e-3
