"""cpu_heavy: a CPU-bound, pure-Python pipeline for scaling demos.

Demonstrates a custom @component whose run() spends about 9 ms (with the default
``rounds``; measured on a 2-vCPU AMD EPYC, CPython 3.11) in a pure-Python loop that
holds the GIL the whole time - no I/O, no C extension doing the work - so throughput
only grows with more worker *processes*, not with more threads. The result is a
deterministic checksum of (rounds, seed), so answers can be verified.

    curl -s -XPOST localhost:1416/cpu_heavy/run -H 'content-type: application/json' -d '{}'
    -> {"result":{"rounds":60000,"seed":0,"checksum":1963516841}}
"""

from typing import Annotated

from haystack import Pipeline, component
from pydantic import Field

from hayhooks import BasePipelineWrapper

# ~9 ms of pure-Python work per call on the reference machine (see README.md).
DEFAULT_ROUNDS = 60000
# The most one request may ask for, ~0.15 s: without a bound, one request could hold a worker for hours.
MAX_ROUNDS = 1_000_000


@component
class SpinChecksum:
    """Run a 32-bit linear congruential generator `rounds` times and sum its high bits."""

    @component.output_types(checksum=int)
    def run(self, rounds: int, seed: int = 0) -> dict[str, int]:
        x = seed & 0xFFFFFFFF
        acc = 0
        for _ in range(rounds):
            x = (x * 1103515245 + 12345) & 0xFFFFFFFF
            acc = (acc + (x >> 16)) & 0xFFFFFFFF
        return {"checksum": acc}


class PipelineWrapper(BasePipelineWrapper):
    def setup(self) -> None:
        self.pipeline = Pipeline()
        self.pipeline.add_component("spin", SpinChecksum())

    def run_api(
        self,
        rounds: Annotated[int, Field(ge=1, le=MAX_ROUNDS)] = DEFAULT_ROUNDS,
        seed: Annotated[int, Field(ge=0, le=0xFFFFFFFF)] = 0,
    ) -> dict:
        """
        Burn CPU in pure Python and return a deterministic checksum.

        Args:
            rounds: Number of loop iterations (1 to 1,000,000); the default takes about 9 ms.
            seed: Seed of the 32-bit generator (0 to 4294967295); different seeds give different checksums.

        Returns:
            A dict with the rounds and seed used and the resulting checksum.
        """
        result = self.pipeline.run({"spin": {"rounds": rounds, "seed": seed}})
        return {"rounds": rounds, "seed": seed, "checksum": result["spin"]["checksum"]}
