"""Makes ``tests/cds_test_utils.py`` importable from every test module (and from processes that
re-import test modules by name), with pytest's assertion rewriting on its asserts."""
import os.path as osp
import sys

import pytest

TESTS_DIR = osp.dirname(osp.abspath(__file__))
if TESTS_DIR not in sys.path:
    sys.path.insert(0, TESTS_DIR)

pytest.register_assert_rewrite('cds_test_utils')
