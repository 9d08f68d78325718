"""streamer: a run method that returns a generator is streamed while it produces.

``POST /streamer/run`` with ``{"count": N}`` streams N short lines as ``text/plain``; the client sees
the first line before the last one is made, and a client that hangs up stops the generator. The
streaming benchmark serves this generator, here and through a plain FastAPI StreamingResponse.

    curl -N -XPOST localhost:1416/streamer/run -H 'content-type: application/json' -d '{"count": 3}'
    -> line 0
       line 1
       line 2
"""

from collections.abc import Generator
from typing import Annotated

from pydantic import Field

from hayhooks import BasePipelineWrapper


def lines(count: int) -> Generator[str, None, None]:
    for index in range(count):
        yield f"line {index}\n"


class PipelineWrapper(BasePipelineWrapper):
    def setup(self) -> None:
        self.pipeline = None

    def run_api(self, count: Annotated[int, Field(ge=1, le=100_000)] = 10) -> Generator:
        """
        Stream numbered lines.

        Args:
            count: How many lines to stream (bounded, so one request cannot stream forever).
        """
        return lines(count)
