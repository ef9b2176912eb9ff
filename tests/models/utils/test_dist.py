import os
import socket
from datetime import timedelta

import pytest
import torch

from cds_mm.models.utils import (gather_labels, gather_shapes,
                                 gather_with_grad, get_rank, get_world_size)
from cds_mm.models.utils.dist import all_reduce_max, gather_sizes


def test_not_distributed_is_identity():
    x, labels = torch.randn(3, 2, requires_grad=True), torch.tensor([4, 5, 6])
    assert get_rank() == 0 and get_world_size() == 1
    assert gather_with_grad(x) is x and gather_labels(labels) is labels
    assert gather_shapes(x) == [(3, 2)] and gather_sizes(x) == [3]
    assert all_reduce_max(labels) is labels
    with pytest.raises(ValueError, match='0-D'):
        gather_with_grad(torch.tensor(1.0))


def _local(rank):
    return torch.arange(6, dtype=torch.float32).reshape(3, 2) + 10 * rank


WEIGHT = torch.arange(12, dtype=torch.float32).reshape(6, 2) - 5
UNEVEN = [(4, 0), (1, 2)]  # rows of rank 0 and rank 1, one case each


def _uneven(rank, sizes):
    return torch.arange(
        2 * sizes[rank], dtype=torch.float32).reshape(-1, 2) + 100 * rank


def _dist_worker(rank, world_size, port, out_dir):
    torch.set_num_threads(1)
    torch.distributed.init_process_group(
        'gloo',
        init_method=f'tcp://127.0.0.1:{port}',
        rank=rank,
        world_size=world_size,
        timeout=timedelta(seconds=30))
    res = dict(rank=get_rank(), world_size=get_world_size())
    x = _local(rank).requires_grad_()
    gathered = gather_with_grad(x)
    # rank-dependent weights: x.grad must be the sum over ranks, (1 + 2) *
    # WEIGHT[own block]
    ((rank + 1) * WEIGHT * gathered).sum().backward()
    res.update(
        gathered=gathered.detach(),
        requires_grad=gathered.requires_grad,
        grad=x.grad)
    labels = gather_labels(torch.tensor([rank, 5 + rank, 7]))
    res.update(labels=labels, labels_requires_grad=labels.requires_grad)
    # unequal rows, none on rank 1 in case 0
    for i, sizes in enumerate(UNEVEN):
        y = _uneven(rank, sizes).requires_grad_()
        gathered = gather_with_grad(y)
        ((rank + 1) * WEIGHT[:len(gathered)] * gathered).sum().backward()
        res[f'uneven{i}'] = dict(
            gathered=gathered.detach(),
            grad=y.grad,
            sizes=gather_sizes(y),
            labels=gather_labels(torch.arange(sizes[rank]) + 10 * rank))
    res['max'] = all_reduce_max(torch.tensor([rank, -rank]))
    # no rows anywhere
    empty = gather_with_grad(torch.zeros(0, 2, requires_grad=True))
    res['empty'] = tuple(empty.shape)
    for name, fn in [('trailing_features', gather_with_grad),
                     ('trailing_labels', gather_labels)]:
        try:
            fn(torch.zeros(2, 2 + rank))
            res[name] = None
        except ValueError as err:
            res[name] = str(err)
    torch.save(res, os.path.join(out_dir, f'rank{rank}.pt'))
    # both ranks done before the group is torn down
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()


@pytest.mark.dist
def test_gloo_gather(tmp_path):
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    torch.multiprocessing.spawn(
        _dist_worker, args=(2, port, str(tmp_path)), nprocs=2)
    expected = torch.cat([_local(0), _local(1)])
    for rank in range(2):
        res = torch.load(tmp_path / f'rank{rank}.pt')
        assert res['rank'] == rank and res['world_size'] == 2
        torch.testing.assert_close(res['gathered'], expected, rtol=0, atol=0)
        assert res['requires_grad']
        torch.testing.assert_close(
            res['grad'], 3 * WEIGHT[3 * rank:3 * rank + 3], rtol=0, atol=0)
        torch.testing.assert_close(res['labels'],
                                   torch.tensor([0, 5, 7, 1, 6, 7]))
        assert not res['labels_requires_grad']
        for i, sizes in enumerate(UNEVEN):
            got = res[f'uneven{i}']
            assert got['sizes'] == list(sizes)
            torch.testing.assert_close(
                got['gathered'],
                torch.cat([_uneven(0, sizes),
                           _uneven(1, sizes)]))
            torch.testing.assert_close(
                got['labels'],
                torch.cat(
                    [torch.arange(sizes[0]),
                     torch.arange(sizes[1]) + 10]))
            # every rank's gradient into this rank's rows, summed: (1 + 2) *
            # WEIGHT there
            start = sum(sizes[:rank])
            torch.testing.assert_close(
                got['grad'],
                3 * WEIGHT[start:start + sizes[rank]],
                rtol=0,
                atol=0)
        assert res['max'].tolist() == [1, 0] and res['empty'] == (0, 2)
        for name in ('trailing_features', 'trailing_labels'):
            assert res[name] is not None
            assert 'trailing dims differ' in res[name]
            assert '[(2, 2), (2, 3)]' in res[name]
