"""What the benchmark scripts share: their subprocesses, the commit they
record, which runs an earlier results file holds, how they print and
summarise. Not a benchmark itself."""
import glob
import json
import os.path as osp
import statistics
import subprocess
import threading
from typing import Callable, Dict, Hashable, List, Optional, Tuple

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
PRINT_LOCK = threading.Lock()


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


def recorded_runs(path: str, key: Callable[[dict],
                                           Hashable]) -> Dict[Hashable, dict]:
    """The runs an earlier results JSON at ``path`` holds, by ``key(run)``;
    none when there is no file yet."""
    if not osp.isfile(path):
        return {}
    with open(path) as f:
        return {key(r): r for r in json.load(f)['runs']}


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
