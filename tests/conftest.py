"""Makes ``tests/cds_test_utils.py`` importable from every test module (and
from processes that re-import test modules by name), with pytest's assertion
rewriting on its asserts.

The suite runs with cds_mm's opt-in stack fixes applied, as our tools do
(``import cds_mm`` alone patches nothing: ``tests/test_import_side_effects.py``
checks that in fresh processes)."""
import os.path as osp
import sys

import pytest

TESTS_DIR = osp.dirname(osp.abspath(__file__))
if TESTS_DIR not in sys.path:
    sys.path.insert(0, TESTS_DIR)

pytest.register_assert_rewrite('cds_test_utils')

import cds_mm.compat  # noqa: E402,F401,I001  (as tools/*.py do)


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
