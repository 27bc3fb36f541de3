"""The optional C extension: multi-buffer MD5 (score.core._md5lanes). Everything else is in pyproject.toml.

``optional=True``: without a C compiler the install still succeeds and the client hashes with hashlib.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "score.core._md5lanes",
            sources=["src/score/core/_md5lanes.c"],
            extra_compile_args=["-O2", "-std=c11"],
            optional=True,
        )
    ]
)
