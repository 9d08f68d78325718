"""The official ``openai`` client against our servers, spread over their workers."""

import httpx
import openai

from tests.helpers.support import Server, wait_until


def fresh_client(server: Server, **options) -> openai.OpenAI:
    """A client on a new connection, so that calls spread over the workers; it never retries."""
    return openai.OpenAI(
        base_url=f"{server.url}/v1", api_key="unused", http_client=httpx.Client(), max_retries=0, **options
    )


def from_every_worker(server: Server, call) -> dict[int, object]:
    """``call(client)`` (a raw response) over fresh connections until every worker answered; the
    parsed answers by worker pid."""
    answers: dict[int, object] = {}

    def all_answered() -> bool:
        raw = call(fresh_client(server))
        answers[int(raw.headers["x-hayhooks-worker"])] = raw.parse()
        return set(answers) == server.worker_pids()

    wait_until(all_answered, 30, interval=0, message="an answer from every worker")
    return answers
