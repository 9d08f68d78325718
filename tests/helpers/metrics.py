"""What a real server's ``GET /metrics`` says, parsed."""

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers.support import Server


def scrape(server: Server) -> dict[tuple[str, tuple], float]:
    """Every sample of one scrape, keyed by (sample name, sorted labels)."""
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def runs_in_flight(server: Server, pipeline: str) -> float:
    """Requests to ``/pipeline/run`` that every worker together has accepted and not answered yet."""
    return value(scrape(server), "hayhooks_requests_in_flight", pipeline=pipeline)
