"""CRC-32 (zlib's polynomial and values) as fast as this machine allows.

ISA-L's (the ``isal`` package, a dependency) is about 4 times zlib's on large
values and 2 times on small ones; zlib's is the fallback where ``isal`` has
no wheel. Both give the same numbers, so tars written with either read with
either.
"""

from __future__ import annotations

try:
    from isal.isal_zlib import crc32
except ImportError:  # no isal wheel for this platform: the same values, slower
    from zlib import crc32

__all__ = ["crc32"]
