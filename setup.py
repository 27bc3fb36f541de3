"""The optional C extensions: multi-buffer MD5 (score.core._md5lanes) and the memory-map guard
(score.core._mapguard). Everything else is in pyproject.toml.

``optional=True``: without a C compiler the install still succeeds; the client then hashes with hashlib
and reads an upload's source with copying reads instead of a memory map.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "score.core._md5lanes",
            sources=["src/score/core/_md5lanes.c"],
            extra_compile_args=["-O2", "-std=c11"],
            optional=True,
        ),
        Extension(
            "score.core._mapguard",
            sources=["src/score/core/_mapguard.c"],
            extra_compile_args=["-O2", "-std=c11"],
            optional=True,
        ),
    ]
)
