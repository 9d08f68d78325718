"""The contract a ``pipeline_wrapper.py`` implements, as the published Hayhooks defines it."""

from abc import ABC, abstractmethod
from typing import Any


class BasePipelineWrapper(ABC):
    """Subclass as ``PipelineWrapper`` in ``NAME/pipeline_wrapper.py``.

    ``setup()`` runs once when a revision loads and usually sets ``self.pipeline``. Implement
    ``run_api`` (runs in a thread) or ``async def run_api_async`` (awaited on the event loop); the
    parameters of the one you implement become the JSON body of ``POST /NAME/run``, and its return
    value becomes ``{"result": ...}``.
    """

    def __init__(self) -> None:
        self.pipeline: Any = None

    @abstractmethod
    def setup(self) -> None:
        """Build or load the pipeline; called once per loaded revision."""

    def run_api(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("run_api not implemented")

    async def run_api_async(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("run_api_async not implemented")
