"""echo: the most trivial wrapper, used to measure per-request overhead.

Demonstrates a one-component pipeline (a custom @component that returns its input
unchanged), so a request's cost is almost entirely the server's own overhead.

    curl -s -XPOST localhost:1416/echo/run -H 'content-type: application/json' -d '{"text":"ping"}'
    -> {"result":"ping"}
"""

from haystack import Pipeline, component

from hayhooks import BasePipelineWrapper


@component
class Echo:
    @component.output_types(text=str)
    def run(self, text: str) -> dict[str, str]:
        return {"text": text}


class PipelineWrapper(BasePipelineWrapper):
    def setup(self) -> None:
        self.pipeline = Pipeline()
        self.pipeline.add_component("echo", Echo())

    def run_api(self, text: str) -> str:
        """
        Return the input text unchanged.

        Args:
            text: Text to echo back.

        Returns:
            The same text.
        """
        return self.pipeline.run({"echo": {"text": text}})["echo"]["text"]
