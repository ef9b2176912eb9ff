"""Every shipped config loads and builds its model in a fresh interpreter;
registries stay clean.

One child process loads each config in ``configs/`` (every .py outside
``_base_``) without importing its ``custom_imports``. It builds the configs
that have none first, before anything has imported ``cds_mm`` (so such a config
must need no cds_mm component), then imports the others' ``custom_imports`` as
``Config.fromfile`` would (the only thing that imports ``cds_mm``) and builds
them as ``Runner.from_cfg`` does; it also returns each merged config for the
ablation check. A second child lists every registry of
mmengine/mmdet/mmpretrain with all upstream modules registered and without
``cds_mm``, then imports ``cds_mm`` and lists them again: the difference is
exactly what cds_mm registers, checked against the upstream names.
"""
import ast
import copy
import json
import os
import os.path as osp
import subprocess
import sys

import pytest

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG_ROOT = osp.join(REPO_ROOT, 'configs')
CUSTOM_IMPORTS = dict(
    imports=['cds_mm', 'cds_mm.compat'], allow_failed_imports=False)
MARK = '@@CDS_JSON@@'


def shipped_configs():
    found = []
    for root, dirs, files in os.walk(CONFIG_ROOT):
        dirs[:] = sorted(d for d in dirs if d != '_base_')
        found += [
            osp.relpath(osp.join(root, f), CONFIG_ROOT) for f in sorted(files)
            if f.endswith('.py')
        ]
    return found


CONFIGS = shipped_configs()

CONFIG_PARAMS = CONFIGS

# Config.fromfile imports custom_imports itself; the model is built as
# Runner.from_cfg does (init_default_scope, then the root MODELS). No
# init_weights: nothing is downloaded or loaded.
BUILD_CHILD = r'''
import json, sys, time, traceback
WRAPPERS = ('CDSClassifier', 'SemiCDSClassifier', 'DistilledCDSClassifier', 'CDSDetector')
from mmengine.config import Config
from mmengine.registry import MODELS, init_default_scope
from mmengine.utils import import_modules_from_strings

def types(node, out):
    if isinstance(node, dict):
        if isinstance(node.get('type'), str):
            out.add(node['type'])
        for v in node.values():
            types(v, out)
    elif isinstance(node, (list, tuple)):
        for v in node:
            types(v, out)
    return out

def no_pretrained(node):
    if isinstance(node, dict):
        init = node.get('init_cfg')
        if isinstance(init, dict) and init.get('type') == 'Pretrained':
            node['init_cfg'] = None
        if node.get('pretrained'):
            node['pretrained'] = None
        for v in node.values():
            no_pretrained(v)
    elif isinstance(node, (list, tuple)):
        for v in node:
            no_pretrained(v)

def build(path, cfg):
    res = dict(cds_mm_before='cds_mm' in sys.modules)
    t = time.time()
    try:
        if 'custom_imports' in cfg:   # what Config.fromfile does with import_custom_modules=True
            import_modules_from_strings(**cfg['custom_imports'])
        res['cds_mm_after_load'] = 'cds_mm' in sys.modules
        res['custom_imports'] = cfg.to_dict().get('custom_imports')
        res['default_scope'] = cfg.get('default_scope')
        res['types'] = sorted(types(cfg.to_dict(), set()))
        model_cfg = cfg.model   # a ConfigDict, as Runner.from_cfg passes it
        no_pretrained(model_cfg)
        if model_cfg.get('type') in WRAPPERS:
            model_cfg.setdefault('probe_size', 32)   # the channels do not depend on it
        init_default_scope(cfg.get('default_scope'))
        model = MODELS.build(model_cfg)
        res['class'] = type(model).__module__ + '.' + type(model).__name__
        res['params'] = sum(p.numel() for p in model.parameters())
    except Exception:
        res['error'] = traceback.format_exc()[-3000:]
    res['seconds'] = round(time.time() - t, 2)
    return res

out, loaded = {}, {}
for path in sys.argv[1:]:
    try:
        loaded[path] = Config.fromfile(path, import_custom_modules=False)
        out[path] = dict(merged=json.loads(json.dumps(loaded[path].to_dict(), default=repr)))
    except Exception:
        out[path] = dict(error=traceback.format_exc()[-3000:])
plain = [p for p, c in loaded.items() if 'custom_imports' not in c]
for path in plain + [p for p in loaded if p not in plain]:   # cds_mm-free configs first
    out[path].update(build(path, loaded[path]))
# cds_mm is imported by now; all of both libraries on top must not clash with it
import mmdet.utils, mmpretrain.utils
try:
    mmdet.utils.register_all_modules(init_default_scope=False)
    mmpretrain.utils.register_all_modules(init_default_scope=False)
    out['__register_all__'] = 'ok'
except Exception:
    out['__register_all__'] = traceback.format_exc()[-3000:]
print('@@CDS_JSON@@' + json.dumps(out))
'''  # noqa: E501

# Names in every registry tree, with all of mmdet and mmpretrain registered;
# then again after `import cds_mm` (the import order opposite to
# BUILD_CHILD's).
REGISTRY_CHILD = r'''
import json, sys, traceback
import mmengine.registry.root as root
from mmengine.registry import Registry
import mmdet.utils, mmpretrain.utils
mmdet.utils.register_all_modules(init_default_scope=False)
mmpretrain.utils.register_all_modules(init_default_scope=False)

def walk(reg, out, top):
    out.setdefault(top, {})[reg.scope] = sorted(reg.module_dict)
    for child in reg.children.values():
        walk(child, out, top)

def listing():
    out = {}
    for name, reg in vars(root).items():
        if isinstance(reg, Registry):
            walk(reg, out, name)
    return out

before = listing()
assert 'cds_mm' not in sys.modules
try:
    import cds_mm
    error = None
except Exception:
    error = traceback.format_exc()[-3000:]
print('@@CDS_JSON@@' + json.dumps(dict(before=before, after=listing(), error=error)))
'''  # noqa: E501


def _start_child(code, *args):
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(
            filter(None, [REPO_ROOT, os.environ.get('PYTHONPATH')])))
    return subprocess.Popen([sys.executable, '-c', code, *args],
                            cwd=REPO_ROOT,
                            env=env,
                            stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE,
                            text=True)


def _result(proc, timeout=240):
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    assert proc.returncode == 0 and MARK in stdout, (stdout + stderr)[-4000:]
    return json.loads(stdout.split(MARK, 1)[1].strip().splitlines()[0])


@pytest.fixture(scope='module')
def children():
    """Both children run at once (they share nothing)."""
    paths = [osp.join(CONFIG_ROOT, c) for c in CONFIGS]
    procs = dict(
        build=_start_child(BUILD_CHILD, *paths),
        registry=_start_child(REGISTRY_CHILD))
    yield procs
    for proc in procs.values():
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


@pytest.fixture(scope='module')
def built(children):
    res = _result(children['build'])
    return {
        osp.relpath(p, CONFIG_ROOT): r
        for p, r in res.items() if osp.isabs(p)
    }, res


@pytest.fixture(scope='module')
def registries(children):
    res = _result(children['registry'])
    assert res['error'] is None, res['error']
    added = {}
    for top, scopes in res['after'].items():
        for scope, names in scopes.items():
            new = set(names) - set(res['before'].get(top, {}).get(scope, []))
            if new:
                added[(top, scope)] = new
    return res['before'], added


def local_bases(path):
    """The files a config's ``_base_`` names inside this repo, absolute."""
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    for node in tree.body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1
                and getattr(node.targets[0], 'id', None) == '_base_'):
            bases = ast.literal_eval(node.value)
            bases = [bases] if isinstance(bases, str) else bases
            return [
                osp.normpath(osp.join(osp.dirname(path), b)) for b in bases
                if '::' not in b
            ]
    return []


def test_every_base_piece_is_inherited_by_a_shipped_config():
    pieces = {
        osp.join(root, f)
        for root, _, files in os.walk(osp.join(CONFIG_ROOT, '_base_'))
        for f in files if f.endswith('.py')
    }
    reached, todo = set(), [osp.join(CONFIG_ROOT, c) for c in CONFIGS]
    while todo:
        for base in local_bases(todo.pop()):
            assert osp.isfile(base), base
            if base not in reached:
                reached.add(base)
                todo.append(base)
    assert pieces, 'no _base_ pieces found'
    # shipped configs may inherit each other; every piece must be used
    assert sorted(pieces - reached) == []


def test_walk_finds_the_config_families():
    assert len(CONFIGS) >= 20
    for family in ('cds_classification', 'cds_detection', 'cds_semi',
                   'cds_distill', 'cds_finegrained', 'demo'):
        assert any(c.startswith(family + os.sep) for c in CONFIGS), family


@pytest.mark.parametrize('family,modes', [
    ('cds_classification/resnet18_{}_1xb128_cifar100.py',
     ('cds', 'dsn', 'baseline')),
    ('cds_classification/resnet50_{}_1xb128_cifar100.py',
     ('cds', 'dsn', 'baseline')),
    ('demo/resnet18-w16_{}_1xb128_fashionmnist.py',
     ('cds', 'dsn', 'baseline')),
    ('cds_detection/faster-rcnn_r50_fpn_{}_1x_coco.py', ('cds', 'baseline')),
    ('cds_detection/retinanet_r50_fpn_{}_1x_coco.py', ('cds', 'baseline')),
    ('demo/faster-rcnn_r18-w16_fpn_{}_shapes.py', ('cds', 'baseline')),
])
def test_ablation_configs_differ_only_in_model_mode(built, family, modes):
    cfgs = {
        m: copy.deepcopy(
            built[0][osp.join(*family.format(m).split('/'))]['merged'])
        for m in modes
    }
    expect = dict(cds='cds', dsn='dsn', baseline='off')
    for m, cfg in cfgs.items():
        assert cfg['model']['mode'] == expect[m], (m, cfg['model'].get('mode'))
        cfg['model'].pop('mode')
    ref = cfgs[modes[0]]
    for m in modes[1:]:
        assert cfgs[m] == ref, \
            f'{family.format(m)} differs from the cds config beyond model.mode'


@pytest.mark.parametrize('config', CONFIG_PARAMS)
def test_config_builds_its_model(built, config):
    res = built[0][config]
    assert 'error' not in res, f'{config}:\n{res["error"]}'
    assert res['default_scope'] in ('mmdet',
                                    'mmpretrain'), res['default_scope']
    module, name = res['class'].rsplit('.', 1)
    # a CDS wrapper lives in the registry of its own library's scope
    expect_scope = dict(
        CDSClassifier='mmpretrain',
        SemiCDSClassifier='mmpretrain',
        DistilledCDSClassifier='mmpretrain',
        CDSDetector='mmdet').get(name)
    if expect_scope:
        assert module.startswith(
            'cds_mm.') and res['default_scope'] == expect_scope, res
    assert res['params'] > 0


@pytest.mark.parametrize('config', CONFIG_PARAMS)
def test_custom_imports_or_needs_no_cds_mm(built, registries, config):
    res = built[0][config]
    assert 'custom_imports' in res, f'{config} does not load:\n{res["error"]}'
    if res['custom_imports'] is not None:
        assert res['custom_imports'] == CUSTOM_IMPORTS, res['custom_imports']
        return
    # without custom_imports the config was built before anything imported
    # cds_mm, and it names no type that cds_mm registers, in the model or in
    # data, hooks and metrics
    assert not res['cds_mm_before'] and not res['cds_mm_after_load'], config
    assert 'error' not in res, res['error']
    cds_names = set().union(*registries[1].values())
    assert not set(res['types']) & cds_names, (config,
                                               set(res['types']) & cds_names)
    assert not res['class'].startswith('cds_mm.')


def test_the_upstream_only_config_is_the_known_one(built):
    plain = sorted(c for c, r in built[0].items()
                   if 'custom_imports' in r and r['custom_imports'] is None)
    assert plain == [
        osp.join('cds_detection', f'{det}_r50_fpn_cds-pretrained_1x_coco.py')
        for det in ('faster-rcnn', 'retinanet')
    ]


def test_both_libraries_register_on_top_of_cds_mm(built):
    assert built[1]['__register_all__'] == 'ok', built[1]['__register_all__']


def test_cds_mm_registers_where_the_style_guide_says(registries):
    _, added = registries
    for name in ('CDSClassifier', 'SemiCDSClassifier',
                 'DistilledCDSClassifier'):
        assert name in added[('MODELS', 'mmpretrain')], name
    for name in ('FashionMNISTIDX', 'SemiSplitDataset'):
        assert name in added[('DATASETS', 'mmpretrain')], name
    assert 'CDSDetector' in added[('MODELS', 'mmdet')]
    for name in ('CDSHead', 'InstanceCDSHead', 'ProposalCDSHead', 'SupConLoss',
                 'KDLoss', 'SepConvProjector', 'MLPProjector'):
        assert name in added[('MODELS', 'mmengine')], name


def test_no_cds_mm_name_shadows_an_upstream_one(registries):
    before, added = registries
    clashes = {}
    for (top, scope), names in added.items():
        upstream = {s: set(n) for s, n in before[top].items()}
        for name in names:
            hit = sorted(s for s, n in upstream.items() if name in n)
            if hit:
                clashes[f'{top}/{scope}/{name}'] = hit
    assert not clashes, f'cds_mm names also registered upstream: {clashes}'
