"""Runtime deploys: validate by loading in the receiving worker, then publish into the directory.

Nothing here touches another worker: once the directory changed, every worker (this one included)
follows it through its reconciler. This worker reconciles before answering, so the caller can use
the pipeline through it right away, and may ask to wait until every live worker serves it too.
"""

import asyncio
from dataclasses import dataclass
from pathlib import Path

from hayhooks.pipelines.loader import PipelineLoadError, parse_yaml_definition
from hayhooks.pipelines.reconciler import Reconciler
from hayhooks.pipelines.source import (
    WRAPPER_FILE,
    Entry,
    EntryKind,
    PipelineExists,
    PipelineSource,
    SourceError,
    check_file_names,
    check_name,
    hash_entry,
)
from hayhooks.server.cluster import WorkerBoard


class DeployRejected(Exception):
    """A deploy refused before anything was published; ``status`` is the HTTP status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Convergence:
    """Where a change stands across the live workers after waiting for it."""

    converged: bool
    workers: list[int]
    lagging: list[int]


class Deployer:
    """Publishes and removes pipelines for the HTTP API."""

    def __init__(self, source: PipelineSource, reconciler: Reconciler, board: WorkerBoard) -> None:
        self.source = source
        self.reconciler = reconciler
        self.board = board

    async def deploy_files(self, name: str, files: dict[str, str], *, overwrite: bool) -> str:
        """Publish a wrapper folder; return its revision."""
        self._check(name, overwrite)
        if WRAPPER_FILE not in files:
            raise DeployRejected(422, f"Missing required file: {WRAPPER_FILE}")
        try:
            check_file_names(files)
        except SourceError as error:
            raise DeployRejected(422, str(error)) from error
        staged = await asyncio.to_thread(self.source.stage_files, name, _encoded(files))
        return await self._validate_and_publish(name, staged, "files", overwrite)

    async def deploy_yaml(self, name: str, source_code: str, *, overwrite: bool, description: str | None) -> str:
        """Publish a YAML pipeline; return its revision."""
        self._check(name, overwrite)
        try:
            parse_yaml_definition(name, source_code)
        except PipelineLoadError as error:
            raise DeployRejected(422, str(error)) from error
        if description:
            source_code = _with_description(source_code, description)
        staged = await asyncio.to_thread(self.source.stage_yaml, name, source_code)
        return await self._validate_and_publish(name, staged, "yaml", overwrite)

    async def undeploy(self, name: str) -> None:
        try:
            check_name(name)
        except SourceError as error:
            raise DeployRejected(422, str(error)) from error
        removed = await asyncio.to_thread(self._remove_locked, name)
        if not removed:
            raise DeployRejected(404, f"Pipeline '{name}' not found")
        await self.reconciler.reconcile()

    async def wait(self, name: str, revision: str | None, timeout: float) -> Convergence:
        """Wait until every live worker serves ``revision`` of ``name`` (``None``: no longer serves it)."""
        workers, lagging = await self.board.wait_for(name, revision, timeout)
        return Convergence(converged=not lagging, workers=workers, lagging=lagging)

    def _check(self, name: str, overwrite: bool) -> None:
        try:
            check_name(name)
        except SourceError as error:
            raise DeployRejected(422, str(error)) from error
        if not overwrite and self.source.exists(name):
            raise DeployRejected(409, f"Pipeline '{name}' already exists; set overwrite to replace it")

    async def _validate_and_publish(self, name: str, staged: Path, kind: EntryKind, overwrite: bool) -> str:
        try:
            revision = await asyncio.to_thread(hash_entry, staged, kind)
            try:
                loaded = await self.reconciler.load(Entry(name=name, kind=kind, path=staged, revision=revision))
            except PipelineLoadError as error:
                raise DeployRejected(422, str(error)) from error
            loaded.unload()  # the published copy is loaded again from its final path by the reconciler
            await asyncio.to_thread(self._publish_locked, name, staged, overwrite)
        except BaseException:
            self.source.discard(staged)
            raise
        await self.reconciler.reconcile()
        return revision

    def _publish_locked(self, name: str, staged: Path, overwrite: bool) -> None:
        with self.source.deploy_lock():
            try:
                self.source.publish(name, staged, overwrite=overwrite)
            except PipelineExists as error:
                raise DeployRejected(409, str(error)) from error

    def _remove_locked(self, name: str) -> bool:
        with self.source.deploy_lock():
            if not self.source.exists(name):
                return False
            self.source.remove(name)
            return True


def _encoded(files: dict[str, str]) -> dict[str, str | bytes]:
    """The files' UTF-8 bytes; text that cannot be encoded (lone surrogates) is refused, not half-written."""
    encoded: dict[str, str | bytes] = {}
    for file_name, content in files.items():
        try:
            encoded[file_name] = content.encode("utf-8")
        except UnicodeEncodeError as error:
            raise DeployRejected(422, f"File {file_name!r} is not valid UTF-8 text: {error.reason}") from error
    return encoded


def _with_description(source_code: str, description: str) -> str:
    """Keep a deploy's description in the YAML itself, so every worker and restart sees it."""
    import yaml

    document = yaml.safe_load(source_code)
    document["description"] = description
    return yaml.safe_dump(document, sort_keys=False)
