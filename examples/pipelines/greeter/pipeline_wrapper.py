"""greeter: the smallest useful wrapper pipeline.

Demonstrates:
- a PipelineWrapper whose setup() builds a one-component Haystack pipeline (PromptBuilder);
- run_api() with a required and a defaulted parameter, documented Google-style
  (the Args/Returns sections become the OpenAPI descriptions);
- importing a sibling module of the pipeline folder with a relative import.

    curl -s -XPOST localhost:1416/greeter/run -H 'content-type: application/json' -d '{"name":"Ada"}'
    -> {"result":"Hello, Ada!"}
"""

from typing import Annotated

from haystack import Pipeline
from haystack.components.builders import PromptBuilder
from pydantic import Field

from hayhooks import BasePipelineWrapper

from .formatting import GREETING_TEMPLATE, clean_name


class PipelineWrapper(BasePipelineWrapper):
    def setup(self) -> None:
        self.pipeline = Pipeline()
        self.pipeline.add_component(
            "builder", PromptBuilder(template=GREETING_TEMPLATE, required_variables=["greeting", "name"])
        )

    def run_api(
        self,
        name: Annotated[str, Field(min_length=1, max_length=100)],
        greeting: Annotated[str, Field(min_length=1, max_length=40)] = "Hello",
    ) -> str:
        """
        Greet someone by name.

        Args:
            name: Name of the person to greet.
            greeting: Greeting word to use.

        Returns:
            The greeting sentence, e.g. "Hello, Ada!".
        """
        result = self.pipeline.run({"builder": {"name": clean_name(name), "greeting": greeting}})
        return result["builder"]["prompt"]
