"""What the benchmark scripts share: their subprocesses, the commit they
record, which runs an earlier results file holds, how they print and
summarise. Not a benchmark itself."""
import argparse
import glob
import hashlib
import json
import os.path as osp
import re
import statistics
import subprocess
import threading
import time
from typing import Callable, Dict, Hashable, List, Optional, Pattern, Tuple

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
PRINT_LOCK = threading.Lock()
TRAIN_RE = re.compile(r'Epoch\(train\)\s+\[(\d+)\]\[\s*(\d+)/(\d+)\]')
ITER_TRAIN_RE = re.compile(r'Iter\(train\)\s+\[\s*(\d+)/(\d+)\]')


def say(msg: str) -> None:
    """Print one whole line now (runs in threads print at once)."""
    with PRINT_LOCK:
        print(msg, flush=True)


def run(cmd: List[str], log: str, env: dict = None) -> None:
    """Run ``cmd`` in the repo root, its output appended to ``log``."""
    with open(log, 'a') as f:
        proc = subprocess.run(
            cmd, cwd=REPO, stdout=f, stderr=subprocess.STDOUT, env=env)
    if proc.returncode:
        raise SystemExit(f'failed ({proc.returncode}): {" ".join(cmd)}; '
                         f'see {log}')


def watch_training(cmd: List[str],
                   log: str,
                   epochs: int,
                   val_re: Pattern,
                   report: Callable[[str, Optional[tuple], float], None],
                   env: dict = None,
                   poll_s: float = 30,
                   iters_per_epoch: Optional[int] = None) -> None:
    """Run the training ``cmd`` in the repo root, its output appended to
    ``log``, and report its progress every ``poll_s`` seconds.

    ``report(line, val, left_s)`` gets ``'epoch e/E iter i/n'``, the last
    ``val_re`` match of this attempt (``(epoch, score)`` strings, or the
    score alone for a one-group pattern) or None, and the seconds this
    attempt still needs at its own pace (a resumed run starts at a later
    iteration). Called only when something moved. An iteration-based loop
    (``iters_per_epoch`` given) logs ``Iter(train) [i/n]``: ``i/n`` then
    counts the whole run and its epoch is ``ceil(i / iters_per_epoch)``.
    """
    offset = osp.getsize(log) if osp.isfile(log) else 0
    began, seen = None, None  # (iteration, time) of this attempt's start
    with open(log, 'a') as f:
        proc = subprocess.Popen(
            cmd, cwd=REPO, stdout=f, stderr=subprocess.STDOUT, env=env)
        while True:
            try:
                code = proc.wait(timeout=poll_s)
                break
            except subprocess.TimeoutExpired:
                pass
            with open(log) as g:
                g.seek(offset)
                text = g.read()
            where = _position(text, epochs, iters_per_epoch)
            if where is None:
                continue
            ep, it, n, pos, total = where
            vals = val_re.findall(text)
            val = vals[-1] if vals else None
            began = began or (pos, time.time())
            if (pos, val) == seen or pos == began[0]:
                continue
            seen = pos, val
            left = (time.time() - began[1]) * (total - pos) / (pos - began[0])
            report(f'epoch {ep}/{epochs} iter {it}/{n}', val, left)
    if code:
        raise SystemExit(f'failed ({code}): {" ".join(cmd)}; see {log}')


def _position(text: str, epochs: int, iters_per_epoch: Optional[int]):
    """``(epoch, iteration, of, iterations done, iterations in all)`` at the
    last training line of ``text``; None before the first."""
    if iters_per_epoch:
        lines = ITER_TRAIN_RE.findall(text)
        if not lines:
            return None
        it, n = (int(x) for x in lines[-1])
        return -(-it // iters_per_epoch), it, n, it, n
    lines = TRAIN_RE.findall(text)
    if not lines:
        return None
    ep, it, n = (int(x) for x in lines[-1])
    return ep, it, n, (ep - 1) * n + it, epochs * n


def git_commit() -> str:
    """HEAD's hash, with ``+dirty`` when tracked files other than the
    results (which the benchmarks themselves rewrite) have changes."""
    try:
        head, dirty = [
            subprocess.check_output(['git', *cmd], cwd=REPO,
                                    text=True).strip()
            for cmd in (['rev-parse', 'HEAD'], [
                'status', '--porcelain', '-uno', '--', '.',
                ':!benchmarks/results'
            ])
        ]
    except (OSError, subprocess.CalledProcessError):
        return 'unknown'
    return head + ('+dirty' if dirty else '')


def stack_versions() -> Dict[str, Optional[str]]:
    """The installed versions of the stack a run trains with (None: not
    installed), from the package metadata."""
    from importlib.metadata import PackageNotFoundError, version
    out = {}
    for name in ('torch', 'torchvision', 'mmcv', 'mmengine', 'mmdet',
                 'mmpretrain', 'numpy'):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def recorded_runs(path: str, key: Callable[[dict],
                                           Hashable]) -> Dict[Hashable, dict]:
    """The runs an earlier results JSON at ``path`` holds, by ``key(run)``;
    none when there is no file yet."""
    if not osp.isfile(path):
        return {}
    with open(path) as f:
        return {key(r): r for r in json.load(f)['runs']}


def other_runs(recorded: Dict[Hashable, dict], name: Optional[str],
               jobs: List[tuple]) -> List[dict]:
    """The ``recorded`` runs (keyed ``(name, *job)``) a call for the ablation
    ``name`` and its ``jobs`` does not make: other ablations', and its own
    ablation's other jobs; a results file keeps them."""
    return [
        r for (other, *job), r in recorded.items()
        if other != name or tuple(job) not in jobs
    ]


def config_digest(config: str, opts: List[str]) -> str:
    """Digest of the config ``tools/train.py`` runs: ``config`` (a path in
    the repo, its ``_base_`` files included) merged with the
    ``--cfg-options`` ``opts``. Two runs with one digest train the same."""
    from mmengine.config import Config, DictAction
    parser = argparse.ArgumentParser()
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    cfg = Config.fromfile(osp.join(REPO, config))
    if opts:
        cfg.merge_from_dict(
            parser.parse_args(['--cfg-options', *opts]).cfg_options)
    text = json.dumps(cfg.to_dict(), sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def earlier_result(recorded: Optional[dict], done_file: str, opts: List[str],
                   digest: str) -> Optional[dict]:
    """A run's earlier result made with the same options ``opts`` and config
    ``digest``: the one a results file holds (``recorded``), else its work
    dir's ``done_file``; None when there is none. Runs recorded before
    digests were kept match on their options.

    Raises:
        SystemExit: ``done_file`` was made with other options or another
            config.
    """

    def same(res):
        return (res.get('cfg_options') == opts
                and res.get('config_digest', digest) == digest)

    if recorded is not None and same(recorded):
        return recorded
    if not osp.isfile(done_file):
        return None
    with open(done_file) as f:
        res = json.load(f)
    if not same(res):
        raise SystemExit(f'{done_file} was made with other options or '
                         'another config; use another --work-dir or delete '
                         'it')
    return res


def twin_run(digest: str, results: str, work_dir: str) -> Optional[dict]:
    """A finished run with the same config ``digest`` made under another
    name (e.g. an ablation whose option became the config's default): in a
    results JSON beside ``results``, or in a ``result.json`` under
    ``work_dir``; None when there is none."""
    for path in sorted(glob.glob(osp.join(
            osp.dirname(results), '*.json'))) + sorted(
                glob.glob(osp.join(work_dir, '*', 'result.json'))):
        try:
            with open(path) as f:
                data = json.load(f)
        except (OSError, ValueError):
            continue
        if not isinstance(data, dict):
            continue
        runs = data['runs'] if isinstance(data.get('runs'), list) else [data]
        for run in runs:
            if isinstance(run, dict) and run.get('config_digest') == digest:
                return run
    return None


def take_twin(twin: dict, done_file: str, tag: str, drop: Tuple[str, ...],
              **fields) -> dict:
    """The result of ``twin`` (from :func:`twin_run`) as the run that
    ``fields`` name, written to ``done_file``: the twin's own naming keys
    ``drop`` left out, ``taken_from`` its work dir."""
    source = osp.dirname(twin['checkpoint'])
    say(f'[{tag}] the run in {source} trained this config already; its '
        'result is taken')
    res = {k: v for k, v in twin.items() if k not in drop}
    res.update(fields, taken_from=source)
    from cds_mm.utils import atomic_write
    with atomic_write(done_file) as f:
        json.dump(res, f, indent=1)
    return res


def mean_std(values: List[float]) -> str:
    """``'mean ± sample std'`` with 2 decimals (std 0 for one value)."""
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f'{statistics.mean(values):.2f} ± {std:.2f}'


def best_checkpoint(work: str, metric: str,
                    val: Dict[int, float]) -> Tuple[Optional[str], int]:
    """The best-val checkpoint ``best_<metric>_epoch_<k>.pth`` in ``work``
    and its epoch ``k``; ``(None, None)`` when there is none.

    A resumed run can leave two: mmengine saves ``epoch_k.pth`` before
    epoch k's val, so a run resumed from it does not know that score and
    saves its own best. Then ``val`` (score per epoch) decides, ties going to
    the earlier epoch as with ``rule='greater'``.
    """

    def epoch_of(path):
        return int(path.rsplit('_', 1)[1].split('.')[0])

    best = sorted(
        glob.glob(osp.join(work, f'best_{metric}_epoch_*.pth')), key=epoch_of)
    if not best:
        return None, None
    path = max(best, key=lambda p: val.get(epoch_of(p), float('-inf')))
    return path, epoch_of(path)
