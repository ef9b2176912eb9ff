"""Makes ``tests/cds_test_utils.py`` importable from every test module (and
from processes that re-import test modules by name), with pytest's assertion
rewriting on its asserts.

The suite runs the library as users of the upstream tools run it: without
cds_mm's opt-in stack fixes (``cds_mm.compat``). A test module that needs a
fix lists it in ``NEEDS_COMPAT`` below, with the reason; its tests get the
``compat`` marker and apply the fixes when they run (they stay applied for
the rest of the process, as they would in a training process). So
``pytest -m "not compat"`` is a run without them, apart from tests that load
a shipped config with ``Config.fromfile`` (its ``custom_imports`` name
``cds_mm.compat``, as the README tells users) and tests that start our tools
in subprocesses (which import it, as ``tools/*.py`` do).
``tests/test_import_side_effects.py`` checks in fresh processes that
``import cds_mm`` alone patches nothing.
"""
import os.path as osp
import sys

import pytest

TESTS_DIR = osp.dirname(osp.abspath(__file__))
if TESTS_DIR not in sys.path:
    sys.path.insert(0, TESTS_DIR)

pytest.register_assert_rewrite('cds_test_utils')

# test module (relative to tests/) -> why it needs cds_mm.compat in-process
NEEDS_COMPAT = {
    'robustness/test_amp.py':
    'bf16 AmpOptimWrapper on CPU (enable_cpu_amp_optim_wrapper) and mmcv '
    'CPU ops under autocast (run_mmcv_cpu_ops_in_fp32)',
    'robustness/test_determinism.py':
    'Runner checkpoints read back under torch>=2.6 weights_only '
    '(allow_mmengine_checkpoint_globals); ColorJitter(hue) on numpy 2',
    'robustness/test_kill_resume.py':
    'resume reads Runner checkpoints under torch>=2.6 weights_only '
    '(allow_mmengine_checkpoint_globals); atomic checkpoint writes',
    'test_bad_input.py':
    'trains through the contrast view ColorJitter(hue=0.1), which overflows '
    'on numpy 2 without fix_mmcv_adjust_hue_for_numpy2',
    'distributed/test_dist_train.py':
    'reads the Runner checkpoints of its runs with torch.load under '
    'torch>=2.6 weights_only (allow_mmengine_checkpoint_globals)',
    'models/data_preprocessors/test_batch_photometric.py':
    'its reference is mmcv ColorJitter(hue), which overflows on numpy 2 '
    'without fix_mmcv_adjust_hue_for_numpy2',
    'test_compat.py':
    'tests the fixes themselves',
    'test_compat_atomic_save.py':
    'tests the atomic checkpoint fix',
}


def pytest_configure(config):
    config.addinivalue_line(
        'markers', 'compat: the test applies cds_mm.compat (see conftest.py)')


def pytest_collection_modifyitems(config, items):
    for item in items:
        rel = osp.relpath(str(item.fspath), TESTS_DIR).replace(osp.sep, '/')
        if rel in NEEDS_COMPAT:
            item.add_marker(pytest.mark.compat)


@pytest.fixture(autouse=True)
def _compat_when_marked(request):
    """Apply cds_mm.compat for the tests of the modules in NEEDS_COMPAT."""
    if request.node.get_closest_marker('compat') is not None:
        import cds_mm.compat
        cds_mm.compat.apply_all()
    yield


@pytest.fixture(autouse=True)
def _restore_default_scope():
    """A test that builds a Runner leaves its ``default_scope`` as mmengine's
    current ``DefaultScope``; restore the previous ones so that registry
    look-ups in later tests do not depend on the test order."""
    from mmengine.registry import DefaultScope
    saved = DefaultScope._instance_dict.copy()
    yield
    DefaultScope._instance_dict.clear()
    DefaultScope._instance_dict.update(saved)
