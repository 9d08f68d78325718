"""echo: the most trivial wrapper, used to measure per-request overhead.

Demonstrates a one-component pipeline (a custom @component that returns its input
unchanged), so a request's cost is almost entirely the server's own overhead; and the smallest
OpenAI-compatible chat: the model ``echo`` answers the last user message.

    curl -s -XPOST localhost:1416/echo/run -H 'content-type: application/json' -d '{"text":"ping"}'
    -> {"result":"ping"}
    curl -s localhost:1416/v1/chat/completions -H 'content-type: application/json' \
        -d '{"model": "echo", "messages": [{"role": "user", "content": "ping"}]}'
"""

from typing import Annotated

from haystack import Pipeline, component
from pydantic import Field

from hayhooks import BasePipelineWrapper, get_last_user_message


@component
class Echo:
    @component.output_types(text=str)
    def run(self, text: str) -> dict[str, str]:
        return {"text": text}


class PipelineWrapper(BasePipelineWrapper):
    def setup(self) -> None:
        self.pipeline = Pipeline()
        self.pipeline.add_component("echo", Echo())

    def run_api(self, text: Annotated[str, Field(max_length=100_000)]) -> str:
        """
        Return the input text unchanged.

        Args:
            text: Text to echo back (at most 100,000 characters).

        Returns:
            The same text.
        """
        return self.pipeline.run({"echo": {"text": text}})["echo"]["text"]

    def run_chat_completion(self, model: str, messages: list[dict], body: dict) -> str:
        """Answer the last user message unchanged."""
        return self.run_api(get_last_user_message(messages) or "")
