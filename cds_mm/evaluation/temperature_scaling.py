"""Post-hoc temperature scaling (Guo et al. 2017) of a classifier's scores.

One scalar ``T > 0`` divides the logits, ``softmax(z / T)``; it is fitted on
held-out data by minimising the negative log-likelihood (NLL). The top-1
class, hence the accuracy, does not change.

mmpretrain heads hand out softmax scores (``pred_score``), not logits.
``log(p)`` equals ``z`` up to a per-sample constant, which softmax ignores,
so ``fit_temperature(scores_to_logits(p), labels)`` fits the same ``T`` as the
logits would, and ``scale_scores(p, T) = softmax(log(p) / T)`` applies it to
stored scores (``ECEMetric(temperature=T)``,
``tools/calibrate_temperature.py``).
"""
from typing import Tuple, Union

import numpy as np
import torch
from torch import Tensor

ArrayLike = Union[Tensor, np.ndarray]
# fp32 softmax rounds probabilities below ~1.4e-45 (its smallest subnormal) to
# 0; that floor keeps their log finite and is their closest bound
SCORE_FLOOR = 1e-45


def _check(logits: ArrayLike, labels: ArrayLike) -> Tuple[Tensor, Tensor]:
    """fp64 logits and int64 labels, or ``ValueError`` naming the bad one."""
    logits = torch.as_tensor(logits).detach().cpu().double()
    labels = torch.as_tensor(labels).detach().cpu()
    if logits.dim() != 2 or logits.shape[0] == 0 or logits.shape[1] < 2:
        raise ValueError('logits must be (N, C) with N >= 1 and C >= 2, got '
                         f'shape {tuple(logits.shape)}')
    if not torch.isfinite(logits).all():
        raise ValueError('logits must be finite (clamp log-scores first, see '
                         'scores_to_logits)')
    n, c = logits.shape
    if labels.shape != (n, ):
        raise ValueError(f'labels must have shape ({n},) to match logits, '
                         f'got {tuple(labels.shape)}')
    if labels.is_floating_point() or labels.dtype == torch.bool:
        raise ValueError(f'labels must hold integer class ids, got dtype '
                         f'{labels.dtype}')
    labels = labels.long()
    if labels.min() < 0 or labels.max() >= c:
        raise ValueError(f'labels must be in [0, {c}), got values in '
                         f'[{int(labels.min())}, {int(labels.max())}]')
    return logits, labels


def scores_to_logits(scores: ArrayLike) -> Tensor:
    """Logits (up to a per-sample constant) of softmax scores: ``log(p)``.

    Args:
        scores (Tensor | np.ndarray): Class probabilities, e.g. mmpretrain's
            ``pred_score``. A 0 (fp32 underflow) becomes ``log(1e-45)``.

    Shapes:
        scores: (N, C) or (C,).
        return: same shape, float64.
    """
    scores = torch.as_tensor(scores).detach().cpu().double()
    return scores.clamp(min=SCORE_FLOOR).log()


def scale_scores(scores: ArrayLike, temperature: float) -> Tensor:
    """Softmax scores after temperature scaling: ``softmax(log(p) / T)``.

    Equals ``softmax(z / T)`` for ``p = softmax(z)``; ``T = 1`` gives ``p``
    back (renormalised, in fp64).

    Args:
        scores (Tensor | np.ndarray): Class probabilities.
        temperature (float): ``T > 0``.

    Shapes:
        scores: (N, C) or (C,).
        return: same shape, float64.
    """
    check_temperature(temperature)
    return (scores_to_logits(scores) / float(temperature)).softmax(dim=-1)


def temperature_nll(logits: ArrayLike, labels: ArrayLike,
                    temperature: float) -> float:
    """Mean NLL of ``softmax(logits / temperature)`` at the labels, in fp64.

    Args:
        logits (Tensor | np.ndarray): Logits, or ``scores_to_logits(p)``.
        labels (Tensor | np.ndarray): Class ids.
        temperature (float): ``T > 0``.

    Shapes:
        logits: (N, C).
        labels: (N,) int.
        return: () Python float.
    """
    check_temperature(temperature)
    logits, labels = _check(logits, labels)
    log_p = (logits / float(temperature)).log_softmax(dim=1)
    return float(-log_p.gather(1, labels[:, None]).mean())


def _nll_slope(logits: Tensor, labels: Tensor, beta: float) -> float:
    """d NLL / d beta of ``softmax(beta * logits)``: mean ``E_p[z] - z_y``.

    The NLL is convex in ``beta = 1 / T`` (its second derivative is the mean
    variance of ``z`` under ``p``), so this slope never decreases.
    """
    p = (beta * logits).softmax(dim=1)
    expected = (p * logits).sum(dim=1)
    return float((expected - logits.gather(1, labels[:, None])[:, 0]).mean())


def check_temperature(temperature: float) -> None:
    """``ValueError`` naming ``temperature`` unless it is a finite number
    > 0."""
    if not (isinstance(temperature,
                       (int, float)) and not isinstance(temperature, bool)
            and np.isfinite(temperature) and temperature > 0):
        raise ValueError(
            f'temperature must be a finite number > 0, got {temperature!r}')


def fit_temperature(logits: ArrayLike,
                    labels: ArrayLike,
                    bounds: Tuple[float, float] = (0.05, 20.0),
                    tol: float = 1e-9) -> float:
    """The temperature in ``bounds`` that minimises the mean NLL.

    A bounded 1-D search: the NLL is convex in ``beta = 1 / T``, so bisecting
    on the sign of its slope (in ``log beta``) finds the global minimum over
    the interval, in fp64, with no step size to tune. A minimum outside the
    interval gives the nearer bound (e.g. the lower one when every sample is
    right with a margin: the NLL then falls all the way to ``T -> 0``). The
    result never has a higher NLL than ``T = 1`` when 1 lies in ``bounds``:
    ``1.0`` is returned when fitting does not strictly lower it (e.g.
    constant logits).

    Args:
        logits (Tensor | np.ndarray): Logits, or ``scores_to_logits(p)`` of
            softmax scores (same fit). Must be finite.
        labels (Tensor | np.ndarray): Class ids in ``[0, C)``.
        bounds (tuple[float, float]): Search interval ``(T_min, T_max)``,
            ``0 < T_min < T_max``. Defaults to (0.05, 20.0).
        tol (float): Stop when the interval in ``log(1 / T)`` is narrower
            (a relative error of ``T``). Defaults to 1e-9.

    Returns:
        float: The fitted temperature ``T``.

    Raises:
        ValueError: naming ``logits``, ``labels``, ``bounds`` or ``tol``.

    Shapes:
        logits: (N, C), N >= 1, C >= 2.
        labels: (N,) int.
        return: () Python float.
    """
    logits, labels = _check(logits, labels)
    t_min, t_max = (float(b) for b in bounds)
    if not 0 < t_min < t_max < float('inf'):
        raise ValueError(
            f'bounds must be (T_min, T_max) with 0 < T_min < T_max, got '
            f'{bounds!r}')
    if not tol > 0:
        raise ValueError(f'tol must be > 0, got {tol!r}')
    lo, hi = np.log(1 / t_max), np.log(1 / t_min)  # log beta
    if _nll_slope(logits, labels, np.exp(lo)) >= 0:
        best = lo
    elif _nll_slope(logits, labels, np.exp(hi)) <= 0:
        best = hi
    else:
        while hi - lo > tol:
            mid = 0.5 * (lo + hi)
            if _nll_slope(logits, labels, np.exp(mid)) < 0:
                lo = mid
            else:
                hi = mid
        best = 0.5 * (lo + hi)
    temperature = float(1 / np.exp(best))
    if t_min <= 1 <= t_max and temperature_nll(logits, labels,
                                               temperature) >= temperature_nll(
                                                   logits, labels, 1.0):
        return 1.0
    return temperature
