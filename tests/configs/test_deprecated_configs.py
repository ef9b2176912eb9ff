"""Renamed configs keep their old file name as a deprecated alias: it loads
the new config unchanged, and our tools' ``load_config`` warns, naming the
new file."""
import ast
import os
import os.path as osp
import warnings

import pytest

from cds_mm.utils.tool_args import DEPRECATED_CONFIGS, load_config

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG_ROOT = osp.join(REPO_ROOT, 'configs')


def _find(name):
    hits = [
        osp.join(root, name) for root, _, files in os.walk(CONFIG_ROOT)
        if name in files
    ]
    assert len(hits) == 1, (name, hits)
    return hits[0]


ALIASES = sorted(DEPRECATED_CONFIGS.items())


@pytest.mark.parametrize('old,new', ALIASES)
def test_alias_file_only_inherits_the_new_one(old, new):
    path = _find(old)
    assert osp.isfile(osp.join(osp.dirname(path), new)), new
    with open(path) as f:
        tree = ast.parse(f.read())
    assert len(tree.body) == 1, f'{old} must hold only _base_ = ...'
    assign = tree.body[0]
    assert isinstance(assign, ast.Assign)
    assert [t.id for t in assign.targets] == ['_base_']
    assert ast.literal_eval(assign.value) == f'./{new}'


@pytest.mark.parametrize('old,new', ALIASES)
def test_load_config_warns_and_gives_the_new_config(old, new):
    path = _find(old)
    with pytest.warns(DeprecationWarning) as record:
        got = load_config(path)
    messages = [
        str(w.message) for w in record
        if issubclass(w.category, DeprecationWarning)
    ]
    assert any(old in m and 'deprecated' in m and new in m
               for m in messages), messages
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter('always')
        want = load_config(osp.join(osp.dirname(path), new))
    assert not [w for w in record if 'deprecated name' in str(w.message)]
    assert got.to_dict() == want.to_dict()
    if '_base_' in old:  # the baselines' former name
        assert want.model.mode == 'off'
