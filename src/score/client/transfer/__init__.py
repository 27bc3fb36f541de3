"""The transfer engine: plan parts, move them in parallel, verify, journal for resume, report progress.

It knows nothing about the command line; the CLI, the benchmarks (and later the FUSE mount) drive it.
"""
