"""One version source (the metafiles are checked in tests/configs/)."""
import os.path as osp
import re

from cds_test_utils import REPO_ROOT


def test_one_version_source():
    import cds_mm
    with open(osp.join(REPO_ROOT, 'cds_mm', 'version.py')) as f:
        declared = re.search(r"__version__ = '([^']+)'", f.read()).group(1)
    assert cds_mm.__version__ == declared
    with open(osp.join(REPO_ROOT, 'setup.py')) as f:
        assert 'version=get_version()' in f.read()
    assert cds_mm.version_info[:2] == tuple(
        int(p) for p in declared.split('.')[:2])
