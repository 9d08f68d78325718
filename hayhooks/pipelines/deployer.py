"""Runtime deploys: check once, try the load in a disposable process, then publish into the directory.

Nothing here touches another worker: once the directory changed, every worker (this one included)
follows it through its reconciler. This worker settles the deployed entry before answering, so the
caller can use the pipeline through it right away; waiting for the other workers is the cluster
view's job.
"""

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar

from hayhooks.pipelines.bounded_yaml import load_bounded
from hayhooks.pipelines.loader import PipelineLoadError, parse_yaml_definition
from hayhooks.pipelines.names import WRAPPER_FILE, InvalidName, check_file_names, check_name
from hayhooks.pipelines.reconciler import Reconciler
from hayhooks.pipelines.source import Entry, EntryKind, PipelineExists, PipelineSource, hash_entry

T = TypeVar("T")
# Loads an entry somewhere it cannot hurt this worker; raises PipelineLoadError saying why it failed.
TrialLoad = Callable[[Entry], Awaitable[None]]
Rejection = Literal["invalid", "conflict", "missing", "too_large"]


@dataclass(frozen=True)
class DeployLimits:
    """How big a files deploy may be (the HAYHOOKS_DEPLOY_MAX_* settings)."""

    files: int = 1000
    path_depth: int = 16
    file_bytes: int = 5 * 1024 * 1024
    total_bytes: int = 10 * 1024 * 1024


class DeployRejected(Exception):
    """A deploy refused before anything was published: ``reason`` says which kind, the message why."""

    def __init__(self, reason: Rejection, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class Deployer:
    """Publishes and removes pipelines for the deploy API."""

    def __init__(
        self, source: PipelineSource, reconciler: Reconciler, trial_load: TrialLoad, limits: DeployLimits | None = None
    ) -> None:
        self.source = source
        self.reconciler = reconciler
        self.trial_load = trial_load
        self.limits = limits or DeployLimits()

    async def deploy_files(self, name: str, files: dict[str, str], *, overwrite: bool) -> str:
        """Publish a wrapper folder; return its revision."""
        _refuse_invalid(check_name, name)
        await self._refuse_existing(name, overwrite)
        if WRAPPER_FILE not in files:
            raise DeployRejected("invalid", f"Missing required file: {WRAPPER_FILE}")
        _refuse_oversized(files, self.limits)
        _refuse_invalid(check_file_names, files)
        staged = await asyncio.to_thread(self.source.stage_files, name, _encoded(files))
        return await self._validate_and_publish(name, staged, "files", overwrite)

    async def deploy_yaml(
        self, name: str, source_code: str, *, overwrite: bool, description: str | None, skip_mcp: bool = False
    ) -> str:
        """Publish a YAML pipeline; return its revision. ``description`` and ``skip_mcp`` go into the YAML."""
        _refuse_invalid(check_name, name)
        await self._refuse_existing(name, overwrite)
        try:
            parse_yaml_definition(name, source_code)
        except PipelineLoadError as error:
            raise DeployRejected("invalid", str(error)) from error
        extra = {"description": description, "skip_mcp": True if skip_mcp else None}
        if any(value is not None for value in extra.values()):
            source_code = _with_fields(source_code, extra)
        staged = await asyncio.to_thread(self.source.stage_yaml, name, source_code)
        return await self._validate_and_publish(name, staged, "yaml", overwrite)

    async def undeploy(self, name: str) -> None:
        _refuse_invalid(check_name, name)
        removed = await asyncio.to_thread(self._remove_locked, name)
        if not removed:
            raise DeployRejected("missing", f"Pipeline '{name}' not found")
        await self.reconciler.reconcile_one(name)

    async def _refuse_existing(self, name: str, overwrite: bool) -> None:
        if not overwrite and await asyncio.to_thread(self.source.exists, name):
            raise DeployRejected("conflict", f"Pipeline '{name}' already exists; set overwrite to replace it")

    async def _validate_and_publish(self, name: str, staged: Path, kind: EntryKind, overwrite: bool) -> str:
        try:
            revision = await asyncio.to_thread(hash_entry, staged, kind)
            try:
                await self.trial_load(Entry(name=name, kind=kind, path=staged, revision=revision))
            except PipelineLoadError as error:
                raise DeployRejected("invalid", str(error)) from error
            await asyncio.to_thread(self._publish_locked, name, staged, overwrite)
        except BaseException:
            await asyncio.to_thread(self.source.discard, staged)
            raise
        await self.reconciler.reconcile_one(name)
        return revision

    def _publish_locked(self, name: str, staged: Path, overwrite: bool) -> None:
        with self.source.deploy_lock():
            try:
                self.source.publish(name, staged, overwrite=overwrite)
            except PipelineExists as error:
                raise DeployRejected("conflict", str(error)) from error

    def _remove_locked(self, name: str) -> bool:
        with self.source.deploy_lock():
            if not self.source.exists(name):
                return False
            self.source.remove(name)
            return True


def _refuse_invalid(check: Callable[[T], object], value: T) -> None:
    """Run a naming rule on what a deploy names, before the directory is touched."""
    try:
        check(value)
    except InvalidName as error:
        raise DeployRejected("invalid", str(error)) from error


def _encoded(files: dict[str, str]) -> dict[str, str | bytes]:
    """The files' UTF-8 bytes; text that cannot be encoded (lone surrogates) is refused, not half-written."""
    encoded: dict[str, str | bytes] = {}
    for file_name, content in files.items():
        try:
            encoded[file_name] = content.encode("utf-8")
        except UnicodeEncodeError as error:
            raise DeployRejected("invalid", f"File {file_name!r} is not valid UTF-8 text: {error.reason}") from error
    return encoded


def _refuse_oversized(files: dict[str, str], limits: DeployLimits) -> None:
    """Count, depth and sizes of a files deploy within ``limits``, checked before anything is written."""
    if len(files) > limits.files:
        raise DeployRejected("invalid", f"{len(files)} files; at most {limits.files} (HAYHOOKS_DEPLOY_MAX_FILES)")
    total = 0
    for file_name, content in files.items():
        depth = file_name.count("/") + 1
        if depth > limits.path_depth:
            raise DeployRejected(
                "invalid",
                f"File {file_name[:100]!r} is {depth} levels deep; at most {limits.path_depth} "
                "(HAYHOOKS_DEPLOY_MAX_PATH_DEPTH)",
            )
        size = len(content.encode("utf-8", "surrogatepass"))
        if size > limits.file_bytes:
            raise DeployRejected(
                "too_large",
                f"File {file_name[:100]!r} has {size} bytes; at most {limits.file_bytes} "
                "(HAYHOOKS_DEPLOY_MAX_FILE_BYTES)",
            )
        total += size
    if total > limits.total_bytes:
        raise DeployRejected(
            "too_large", f"The files have {total} bytes; at most {limits.total_bytes} (HAYHOOKS_DEPLOY_MAX_TOTAL_BYTES)"
        )


def _with_fields(source_code: str, fields: dict[str, object]) -> str:
    """Keep a deploy's description and MCP choice in the YAML itself, so every worker and restart sees them."""
    import yaml

    document = load_bounded(source_code)  # parsed (and bounded) once already by parse_yaml_definition
    document.update({key: value for key, value in fields.items() if value is not None})
    return yaml.safe_dump(document, sort_keys=False)
