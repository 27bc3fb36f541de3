"""Genomic views of remote objects: ``score-client view`` (region slicing) and ``score-client samtools``.

pysam is imported lazily (inside functions) so the rest of the client works without the ``genomics`` extra.
"""
