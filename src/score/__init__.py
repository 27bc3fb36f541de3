"""Score: a broker of authenticated, verified transfers between people and object storage."""

__version__ = "0.1.0"
