"""Reading the server's ``/metrics`` (Prometheus' text format) in tests."""

from __future__ import annotations

import re


def samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    """(labels, value) of each sample of one metric in Prometheus' text format."""
    found = []
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            series, _, value = line.rpartition(" ")
            labels = dict(re.findall(r'(\w+)="([^"]*)"', series[len(name) :]))
            found.append((labels, float(value)))
    return found


def value(text: str, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels``."""
    return sum(v for have, v in samples(text, name) if labels.items() <= have.items())
