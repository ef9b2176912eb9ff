import os
import socket
from datetime import timedelta

import pytest
import torch

from cds_mm.models.utils import (gather_labels, gather_shapes, gather_with_grad, get_rank,
                                 get_world_size)


def test_not_distributed_is_identity():
    x, labels = torch.randn(3, 2, requires_grad=True), torch.tensor([4, 5, 6])
    assert get_rank() == 0 and get_world_size() == 1
    assert gather_with_grad(x) is x and gather_labels(labels) is labels
    assert gather_shapes(x) == [(3, 2)]
    with pytest.raises(ValueError, match='0-D'):
        gather_with_grad(torch.tensor(1.0))


def _local(rank):
    return torch.arange(6, dtype=torch.float32).reshape(3, 2) + 10 * rank


WEIGHT = torch.arange(12, dtype=torch.float32).reshape(6, 2) - 5


def _dist_worker(rank, world_size, port, out_dir):
    torch.set_num_threads(1)
    torch.distributed.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{port}',
                                         rank=rank, world_size=world_size,
                                         timeout=timedelta(seconds=30))
    res = dict(rank=get_rank(), world_size=get_world_size())
    x = _local(rank).requires_grad_()
    gathered = gather_with_grad(x)
    # rank-dependent weights: x.grad must be the sum over ranks, (1 + 2) * WEIGHT[own block]
    ((rank + 1) * WEIGHT * gathered).sum().backward()
    res.update(gathered=gathered.detach(), requires_grad=gathered.requires_grad, grad=x.grad)
    labels = gather_labels(torch.tensor([rank, 5 + rank, 7]))
    res.update(labels=labels, labels_requires_grad=labels.requires_grad)
    for name, fn in [('uneven_features', gather_with_grad), ('uneven_labels', gather_labels)]:
        try:
            fn(torch.zeros(2 + rank, 2))
            res[name] = None
        except ValueError as err:
            res[name] = str(err)
    torch.save(res, os.path.join(out_dir, f'rank{rank}.pt'))
    torch.distributed.barrier()  # both ranks done before the group is torn down
    torch.distributed.destroy_process_group()


@pytest.mark.dist
def test_gloo_gather(tmp_path):
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    torch.multiprocessing.spawn(_dist_worker, args=(2, port, str(tmp_path)), nprocs=2)
    expected = torch.cat([_local(0), _local(1)])
    for rank in range(2):
        res = torch.load(tmp_path / f'rank{rank}.pt')
        assert res['rank'] == rank and res['world_size'] == 2
        torch.testing.assert_close(res['gathered'], expected, rtol=0, atol=0)
        assert res['requires_grad']
        torch.testing.assert_close(res['grad'], 3 * WEIGHT[3 * rank:3 * rank + 3], rtol=0, atol=0)
        torch.testing.assert_close(res['labels'], torch.tensor([0, 5, 7, 1, 6, 7]))
        assert not res['labels_requires_grad']
        for name in ('uneven_features', 'uneven_labels'):
            assert res[name] is not None and 'differ across ranks' in res[name]
            assert '[(2, 2), (3, 2)]' in res[name]
