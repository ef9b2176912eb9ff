"""One ``data_root`` for every dataloader of a config.

mmengine substitutes a config's ``data_root`` variable when it parses the
file, so ``--cfg-options data_root=...`` alone changes only the top-level
key. :func:`set_data_root` moves every dataset of the train / val / test
dataloaders (wrapped ones too: ``ConcatDataset``, ``SemiSplitDataset``, ...)
and the evaluators' ``ann_file`` to one folder; :func:`merge_cfg_options` is
``Config.merge_from_dict`` with that rule for ``data_root``. Works on a
loaded config before anything is built: needs neither mmdet nor mmpretrain.
The shipped configs also read ``data_root`` from the ``CDS_DATA_ROOT``
environment variable (mmengine's ``{{$VAR:default}}``), for upstream tools.
:func:`warn_data_root_mismatch` says when the top-level ``data_root`` is not
what the datasets read (our tools and ``DataRootCheckHook`` call it).
"""
import logging
import os.path as osp
from typing import Iterator, List, Optional, Sequence, Tuple

LOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')
EVALUATORS = ('val_evaluator', 'test_evaluator')
ENV_VAR = 'CDS_DATA_ROOT'


def iter_datasets(cfg,
                  loaders: Sequence[str] = LOADERS
                  ) -> Iterator[Tuple[str, dict]]:
    """Yield ``(key, dataset cfg)`` for each innermost dataset.

    Wrappers are followed through ``dataset`` (a dict) and ``datasets`` (a
    list); a wrapper itself is not yielded. Missing or ``None`` loaders are
    skipped.

    Args:
        cfg (Config | dict): A loaded config.
        loaders (Sequence[str]): Dataloader keys. Defaults to
            :data:`LOADERS`.

    Yields:
        tuple: The dotted config key (e.g.
        ``'train_dataloader.dataset.datasets.0'``) and the dataset dict
        itself (edits reach the config).
    """
    for name in loaders:
        loader = cfg.get(name)
        if isinstance(loader, dict) and isinstance(
                loader.get('dataset'), dict):
            yield from _leaves(f'{name}.dataset', loader['dataset'])


def _leaves(key: str, node: dict) -> Iterator[Tuple[str, dict]]:
    """Depth-first innermost datasets below one dataset cfg."""
    inner, inners = node.get('dataset'), node.get('datasets')
    if isinstance(inner, dict):
        yield from _leaves(f'{key}.dataset', inner)
    elif isinstance(inners, (list, tuple)):
        for i, child in enumerate(inners):
            if isinstance(child, dict):
                yield from _leaves(f'{key}.datasets.{i}', child)
    else:
        yield key, node


def evaluator_metrics(cfg) -> Iterator[Tuple[str, dict]]:
    """``(key, metric cfg)`` for each metric of the val / test evaluators."""
    for name in EVALUATORS:
        node = cfg.get(name)
        metrics = node if isinstance(node, (list, tuple)) else [node]
        for i, metric in enumerate(metrics):
            if isinstance(metric, dict):
                key = name if len(metrics) == 1 else f'{name}.{i}'
                yield key, metric


def _rebase(path, old: Optional[str], new: str):
    """``path`` moved from under ``old`` to under ``new``; else unchanged."""
    if not isinstance(path, str) or not old:
        return path
    head = old.rstrip('/')
    if path.rstrip('/') == head:
        return new
    if path.startswith(head + '/'):
        return osp.join(new, path[len(head) + 1:])
    return path


def set_data_root(cfg, data_root: str) -> List[str]:
    """Point every dataset and evaluator of ``cfg`` at ``data_root``.

    Each innermost dataset of the train / val / test dataloaders gets
    ``data_root``; its ``ann_file`` and ``data_prefix`` entries that were
    under the old root, and the evaluators' ``ann_file`` under any old
    root, move along. The top-level ``data_root`` key is set too.

    Args:
        cfg (Config | dict): A loaded config, edited in place.
        data_root (str): The folder that holds the data set.

    Returns:
        list[str]: The config keys of the datasets that were moved.
    """
    if not isinstance(data_root, str) or not data_root.strip():
        raise ValueError(f'data_root must be a non-empty path, got '
                         f'{data_root!r}')
    old_roots, keys = set(), []
    for key, node in iter_datasets(cfg):
        old = node.get('data_root')
        if isinstance(old, str) and old:
            old_roots.add(old)
            node['ann_file'] = _rebase(node.get('ann_file'), old, data_root)
            prefix = node.get('data_prefix')
            if isinstance(prefix, dict):
                for name, value in prefix.items():
                    prefix[name] = _rebase(value, old, data_root)
            elif prefix is not None:
                node['data_prefix'] = _rebase(prefix, old, data_root)
        node['data_root'] = data_root
        keys.append(key)
    for _, metric in evaluator_metrics(cfg):
        for old in sorted(old_roots, key=len, reverse=True):
            moved = _rebase(metric.get('ann_file'), old, data_root)
            if moved != metric.get('ann_file'):
                metric['ann_file'] = moved
                break
    cfg['data_root'] = data_root
    return keys


def merge_cfg_options(cfg, options: Optional[dict]) -> None:
    """``cfg.merge_from_dict(options)``, with ``data_root`` for all loaders.

    ``data_root`` is applied first with :func:`set_data_root`, then the
    other options, so an explicit key such as
    ``val_dataloader.dataset.data_root`` still wins.

    Args:
        cfg (Config): A loaded config, edited in place.
        options (dict, optional): Parsed ``--cfg-options``.
    """
    options = dict(options or {})
    if 'data_root' in options:
        set_data_root(cfg, options.pop('data_root'))
    if options:
        cfg.merge_from_dict(options)


def data_root_mismatches(cfg,
                         loaders: Sequence[str] = LOADERS
                         ) -> List[Tuple[str, str]]:
    """``(key, value)`` of each dataset ``data_root`` that is not the
    config's top-level ``data_root``.

    mmengine substitutes the ``data_root`` variable while it parses each
    file, so a child config that sets only the top-level ``data_root`` (or
    upstream tools' ``--cfg-options data_root=DIR``) leaves the datasets of
    its base where they were. Paths are compared after ``osp.normpath``
    (``'data/x/'`` is ``'data/x'``); a config without a top-level string
    ``data_root`` and datasets without one are not checked.

    Args:
        cfg (Config | dict): A loaded config.
        loaders (Sequence[str]): Dataloader keys. Defaults to
            :data:`LOADERS`.

    Returns:
        list[tuple[str, str]]: Dotted keys such as
        ``'train_dataloader.dataset.data_root'`` and their values.
    """
    top = cfg.get('data_root')
    if not isinstance(top, str) or not top.strip():
        return []
    out = []
    for key, node in iter_datasets(cfg, loaders):
        root = node.get('data_root')
        if isinstance(root, str) and osp.normpath(root) != osp.normpath(top):
            out.append((f'{key}.data_root', root))
    return out


_WARNED = set()  # (top-level data_root, key, value) already warned about


def warn_data_root_mismatch(cfg,
                            loaders: Sequence[str] = LOADERS,
                            logger='current') -> Optional[str]:
    """Log a warning naming each dataset whose ``data_root`` is not the
    top-level one (see :func:`data_root_mismatches`).

    A ``(key, value)`` pair is warned about once per process, so our tools
    and ``DataRootCheckHook`` in the same run do not repeat each other.

    Args:
        cfg (Config | dict): A loaded config.
        loaders (Sequence[str]): Dataloader keys. Defaults to
            :data:`LOADERS`.
        logger (str | logging.Logger): Where ``print_log`` writes. Defaults
            to ``'current'`` (mmengine's current logger).

    Returns:
        str | None: The message logged, or None when nothing was new.
    """
    top = cfg.get('data_root')
    new = [(k, v) for k, v in data_root_mismatches(cfg, loaders)
           if (top, k, v) not in _WARNED]
    if not new:
        return None
    _WARNED.update((top, k, v) for k, v in new)
    shown = ', '.join(f'{k}={v!r}' for k, v in new)
    msg = (f'data_root={top!r} (top level) is not what the datasets read: '
           f'{shown}. mmengine substitutes the data_root variable when it '
           'parses each config file, so setting only the top-level key in a '
           'child config or with --cfg-options leaves the datasets of the '
           'base config where they were. Set those keys too, or pass '
           '--cfg-options data_root=DIR to cds_mm\'s tools/train.py and '
           'tools/test.py (they move every dataset), or set '
           f'{ENV_VAR}=DIR for a shipped config.')
    from mmengine.logging import print_log
    print_log(msg, logger=logger, level=logging.WARNING)
    return msg
