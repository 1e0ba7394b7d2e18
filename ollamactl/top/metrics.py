"""A server's ``/metrics`` text, read into flat samples that ``ollamactl top`` adds up.

The text is parsed with ``prometheus_client.parser`` (imported on first use). Samples are kept
by their own name (``ollama_generated_tokens_total``, ``..._seconds_sum``), not by family: the
parser drops ``_total`` from a counter's family name, and ``top`` only ever wants sums of
samples, filtered or grouped by a label.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field

Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Metrics:
    """Every sample of one scrape: sample name -> [(labels, value)]."""

    samples: Mapping[str, tuple[tuple[Labels, float], ...]] = field(default_factory=dict)

    def has(self, name: str) -> bool:
        return name in self.samples

    def total(self, name: str, **match: str) -> float | None:
        """The sum of ``name``'s samples whose labels include ``match``; None when the server
        sends no sample of that name."""
        if name not in self.samples:
            return None
        return sum(value for labels, value in self.samples[name]
                   if _matches(labels, match))

    def by_label(self, name: str, label: str) -> dict[str, float]:
        """``name``'s samples summed per value of ``label`` (``{"smollm2:135m": 412.0}``)."""
        grouped: dict[str, float] = defaultdict(float)
        for labels, value in self.samples.get(name, ()):
            key = dict(labels).get(label)
            if key is not None:
                grouped[key] += value
        return dict(grouped)

    def labels(self, name: str) -> list[dict[str, str]]:
        """The label sets of ``name``'s samples (an info metric's facts)."""
        return [dict(labels) for labels, _ in self.samples.get(name, ())]


def _matches(labels: Labels, match: Mapping[str, str]) -> bool:
    have = dict(labels)
    return all(have.get(key) == value for key, value in match.items())


def parse(text: str) -> Metrics:
    """The samples of a Prometheus text exposition.

    Raises:
        ValueError: the text is not the exposition format.
    """
    from prometheus_client.parser import text_string_to_metric_families

    samples: dict[str, list[tuple[Labels, float]]] = defaultdict(list)
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                samples[sample.name].append(
                    (tuple(sorted(sample.labels.items())), float(sample.value)))
    except (ValueError, TypeError, IndexError) as exc:
        raise ValueError(f"not Prometheus text ({exc})") from exc
    return Metrics({name: tuple(values) for name, values in samples.items()})
