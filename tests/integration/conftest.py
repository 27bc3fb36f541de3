"""The store table's fixtures (``store_backends.py``) for every integration test: ``backend``, ``store`` (a fresh,
empty store of each backend; modules that test one store define their own ``store``) and ``local_data_plane``."""

from tests.integration.store_backends import backend, local_data_plane, store  # noqa: F401 (fixtures)
