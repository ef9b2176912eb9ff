# Copyright (c) cds_mm contributors. All rights reserved.
__version__ = '0.2.0'


def parse_version_info(version_str: str) -> tuple:
    """``'0.2.0rc1'`` -> ``(0, 2, 0, 'rc1')``."""
    info = []
    for part in version_str.split('.'):
        if part.isdigit():
            info.append(int(part))
        else:
            digits = ''.join(c for c in part if c.isdigit())
            info += [int(digits), part[len(digits):]]
    return tuple(info)


version_info = parse_version_info(__version__)
