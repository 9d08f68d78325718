"""hayhooks: Haystack pipelines served as REST APIs by every worker of a multi-process server.

Only the names below are public. They load on first use, so ``import hayhooks`` (and the CLI)
stays fast and imports no Haystack.
"""

from importlib import import_module
from typing import Any

_EXPORTS = {
    "BasePipelineWrapper": "hayhooks.pipelines.wrapper",
    "create_app": "hayhooks.http.app",
    "log": "hayhooks.logs",
    # streaming a run
    "SSEStream": "hayhooks.pipelines.sse",
    "async_streaming_generator": "hayhooks.pipelines.streaming",
    "streaming_generator": "hayhooks.pipelines.streaming",
    "default_on_pipeline_end": "hayhooks.callbacks",
    "default_on_tool_call_end": "hayhooks.callbacks",
    "default_on_tool_call_start": "hayhooks.callbacks",
    # events for chat UIs
    "PipelineEvent": "hayhooks.events",
    "create_notification_event": "hayhooks.events",
    "create_status_event": "hayhooks.events",
    "OpenWebUIEvent": "hayhooks.open_webui",
    "create_chat_completion_event": "hayhooks.open_webui",
    "create_details_tag": "hayhooks.open_webui",
    "create_message_event": "hayhooks.open_webui",
    "create_replace_event": "hayhooks.open_webui",
    "create_source_event": "hayhooks.open_webui",
    # reading chat requests
    "chat_messages_from_openai_response": "hayhooks.pipelines.chat",
    "get_input_files": "hayhooks.pipelines.chat",
    "get_last_user_input_text": "hayhooks.pipelines.chat",
    "get_last_user_message": "hayhooks.pipelines.chat",
    "is_user_message": "hayhooks.pipelines.chat",
    "coerce_pipeline_inputs": "hayhooks.pipelines.inputs",
    # files uploaded through /v1/files, by any worker
    "file_path": "hayhooks.cluster.files",
    "open_file": "hayhooks.cluster.files",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'hayhooks' has no attribute {name!r}")
    value = getattr(import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value
