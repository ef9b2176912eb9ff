"""configs/*/metafile.yml list every shipped config once, in mmpretrain's
format (Collections + Models, paths relative to the repo root), and each
method folder has its README."""
import os
import os.path as osp
import re

import pytest
import yaml

from cds_mm.utils.tool_args import DEPRECATED_CONFIGS

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG_ROOT = osp.join(REPO_ROOT, 'configs')
FOLDERS = sorted(
    d for d in os.listdir(CONFIG_ROOT)
    if d != '_base_' and osp.isdir(osp.join(CONFIG_ROOT, d)))


def read(folder):
    with open(osp.join(CONFIG_ROOT, folder, 'metafile.yml')) as f:
        return yaml.safe_load(f)


def test_every_config_has_exactly_one_entry():
    """Deprecated names (aliases of a renamed config) are left out: mim
    lists the metafile's entries."""
    listed = []
    for folder in FOLDERS:
        listed += [m['Config'] for m in read(folder)['Models']]
    shipped = sorted(
        osp.relpath(osp.join(root, f), REPO_ROOT)
        for root, dirs, files in os.walk(CONFIG_ROOT)
        if '_base_' not in root.split(os.sep) for f in files
        if f.endswith('.py') and f not in DEPRECATED_CONFIGS)
    assert sorted(listed) == shipped


@pytest.mark.parametrize('folder', FOLDERS)
def test_metafile_format(folder):
    meta = read(folder)
    assert set(meta) == {'Collections', 'Models'}
    collections = {c['Name']: c for c in meta['Collections']}
    for c in collections.values():
        assert c['Paper']['URL'] == 'https://arxiv.org/abs/2207.05306'
        assert c['README'] == f'configs/{folder}/README.md'
        assert osp.isfile(osp.join(REPO_ROOT, c['README']))
    for m in meta['Models']:
        assert m['In Collection'] in collections, m['Name']
        assert m['Name'] == osp.splitext(osp.basename(m['Config']))[0]
        assert m['Config'].startswith(f'configs/{folder}/')
        assert 'Training Data' in m['Metadata'], m['Name']


def test_model_names_are_unique():
    names = [m['Name'] for folder in FOLDERS for m in read(folder)['Models']]
    assert len(names) == len(set(names))


@pytest.mark.parametrize('folder', FOLDERS)
def test_readme_sections(folder):
    with open(osp.join(CONFIG_ROOT, folder, 'README.md')) as f:
        text = f.read()
    for section in ('## Abstract', '## How to use it?',
                    '## Models and results', '## Configs', '## Citation',
                    '@inproceedings{zhang2022contrastive'):
        assert section in text, (folder, section)
    # every config of the folder is named in its README
    for cfg in os.listdir(osp.join(CONFIG_ROOT, folder)):
        stem = cfg[:-3]
        if cfg.endswith('.py') and stem not in text:
            # brace lists such as resnet{18,50}_cds_... count as naming it
            assert _in_brace_list(stem, text), (folder, cfg)


def _expand(pattern):
    """``'r{18,50}_{a,b}'`` -> the four names it stands for."""
    head, brace, rest = pattern.partition('{')
    if not brace:
        return [pattern]
    options, _, tail = rest.partition('}')
    return [head + o + t for o in options.split(',') for t in _expand(tail)]


def _in_brace_list(stem, text):
    """Whether ``stem`` is one expansion of a backquoted ``a{x,y}b.py``."""
    return any(
        stem in _expand(p) for p in re.findall(r'`([\w.{},-]+)\.py`', text))
