"""Object stores behind one protocol (``base.ObjectStore``); one module per backend."""
