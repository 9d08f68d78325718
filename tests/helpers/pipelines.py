"""Small offline pipelines the tests deploy, edit and break."""

import textwrap
from pathlib import Path

GREET = '''
from hayhooks import BasePipelineWrapper
from .helpers import punctuate


class PipelineWrapper(BasePipelineWrapper):
    def setup(self) -> None:
        self.pipeline = None
        self.greeting = (Path(__file__).parent / "greeting.txt").read_text().strip()

    def run_api(self, name: str, excited: bool = False) -> str:
        """Greet someone.

        Args:
            name: Who to greet.
            excited: End with an exclamation mark.

        Returns:
            The greeting.
        """
        return punctuate(f"{self.greeting}, {name}", excited)
'''
GREET_FILES = {
    "helpers.py": "def punctuate(text, excited):\n    return text + ('!' if excited else '.')\n",
    "greeting.txt": "Hello\n",
}

VERSIONED = '''
import os
import time

from hayhooks import BasePipelineWrapper

VERSION = {version!r}


class PipelineWrapper(BasePipelineWrapper):
    def setup(self) -> None:
        self.pipeline = None

    def run_api(self, delay: float = 0.0) -> dict:
        """Report the version of this code and the worker that ran it."""
        time.sleep(delay)
        return {{"version": VERSION, "pid": os.getpid()}}
'''

GATED = '''
import time
import uuid
from pathlib import Path

from hayhooks import BasePipelineWrapper


class PipelineWrapper(BasePipelineWrapper):
    def setup(self) -> None:
        self.pipeline = None

    def run_api(self, gate: str) -> str:
        """Leave a file in the folder ``gate`` as this run starts, then hold its thread until ``gate/open`` exists."""
        folder = Path(gate)
        (folder / f"started-{uuid.uuid4().hex}").touch()
        deadline = time.monotonic() + 60  # a test that never opens the gate does not hold its server forever
        while not (folder / "open").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        return "released"
'''


# setup() notes its start and end, with the worker's pid and the code's version, in a file outside the
# pipelines directory, and takes ``seconds`` between them: which workers loaded at once, and when.
RECORDS_SETUP = '''
import os
import time

from hayhooks import BasePipelineWrapper

VERSION = {version!r}


def note(event: str) -> None:
    with open({record!r}, "a") as record:
        record.write(f"{{event}} {{os.getpid()}} {{VERSION}} {{time.time()}}\\n")


class PipelineWrapper(BasePipelineWrapper):
    def setup(self) -> None:
        self.pipeline = None
        note("start")
        time.sleep({seconds!r})
        note("end")

    def run_api(self) -> dict:
        """Report the version of this code and the worker that ran it."""
        return {{"version": VERSION, "pid": os.getpid()}}
'''


class Gate:
    """The test's side of ``GATED``: the body that sends runs to ``folder``, how many of them started, and
    opening the gate, which lets every held run finish."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True)
        self.folder = folder
        self.body = {"gate": str(folder)}

    def started(self) -> int:
        return sum(1 for _ in self.folder.glob("started-*"))

    def open(self) -> None:
        (self.folder / "open").touch()


ASYNC = """
import asyncio

from hayhooks import BasePipelineWrapper


class PipelineWrapper(BasePipelineWrapper):
    def setup(self) -> None:
        self.pipeline = None

    async def run_api_async(self, numbers: list[int]) -> int:
        await asyncio.sleep(0)
        return sum(numbers)
"""

RAISES = """
from hayhooks import BasePipelineWrapper


class PipelineWrapper(BasePipelineWrapper):
    def setup(self) -> None:
        self.pipeline = None

    def run_api(self, value: int) -> int:
        raise ValueError(f"cannot handle {value}")
"""

NO_RUN_METHOD = """
from hayhooks import BasePipelineWrapper


class PipelineWrapper(BasePipelineWrapper):
    def setup(self) -> None:
        self.pipeline = None
"""

SETUP_FAILS = """
from hayhooks import BasePipelineWrapper


class PipelineWrapper(BasePipelineWrapper):
    def setup(self) -> None:
        raise RuntimeError("no index available")

    def run_api(self) -> str:
        return "never"
"""

SETUP_HANGS = """
import time

from hayhooks import BasePipelineWrapper


class PipelineWrapper(BasePipelineWrapper):
    def setup(self) -> None:
        time.sleep(3600)

    def run_api(self) -> str:
        return "never"
"""

SYNTAX_ERROR = "from hayhooks import BasePipelineWrapper\n\nclass PipelineWrapper(BasePipelineWrapper:\n"
IMPORT_ERROR = "import module_that_does_not_exist\n"

PROMPT_YAML = """
description: Fill a prompt template.
components:
  builder:
    type: haystack.components.builders.prompt_builder.PromptBuilder
    init_parameters:
      template: "Question about {{topic}}: {{query}}"
connections: []
inputs:
  query: builder.query
  topic: builder.topic
outputs:
  prompt: builder.prompt
"""


def wrapper_code(template: str, **values: str) -> str:
    code = template.format(**values) if values else template
    if "Path(" in code and "from pathlib import Path" not in code:
        code = "from pathlib import Path\n" + code
    return textwrap.dedent(code).lstrip()


def write_wrapper(root: Path, name: str, code: str, files: dict[str, str] | None = None) -> Path:
    """Write ``root/name/pipeline_wrapper.py`` (plus sibling files) the way a user would."""
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    for file_name, content in wrapper_files(code, files).items():
        (folder / file_name).write_text(content)
    return folder


def wrapper_files(code: str, files: dict[str, str] | None = None) -> dict[str, str]:
    """The files of a wrapper pipeline, as ``/deploy_files`` takes them."""
    extra = files if files is not None else (GREET_FILES if code is GREET else {})
    return {"pipeline_wrapper.py": wrapper_code(code), **extra}


def versioned(version: str) -> str:
    return wrapper_code(VERSIONED, version=version)


def write_yaml(root: Path, name: str, source: str) -> Path:
    path = root / f"{name}.yml"
    path.write_text(source)
    return path


UPLOADS = '''
import hashlib

from fastapi import UploadFile
from pydantic import BaseModel

from hayhooks import BasePipelineWrapper


class Meta(BaseModel):
    source: str
    pages: int = 0


class PipelineWrapper(BasePipelineWrapper):
    def setup(self) -> None:
        self.pipeline = None

    def run_api(
        self,
        count: int,
        files: list[UploadFile] | None = None,
        excited: bool = False,
        tags: list[str] = [],
        meta: Meta | None = None,
        label: str = "",
    ) -> dict:
        """Describe the uploaded files and echo the typed fields.

        Args:
            count: A number; negative ones make the pipeline fail.
            files: The documents to describe.
        """
        if count < 0:
            raise ValueError("count must not be negative")
        described = []
        for upload in files or []:
            digest, size = hashlib.sha256(), 0
            while chunk := upload.file.read(1 << 20):
                digest.update(chunk)
                size += len(chunk)
            described.append(
                {"filename": upload.filename, "content_type": upload.content_type, "size": size,
                 "sha256": digest.hexdigest()}
            )
        return {"count": count, "excited": excited, "tags": tags, "label": label,
                "meta": meta.model_dump() if meta else None, "files": described}
'''

ONE_FILE = """
from fastapi import UploadFile

from hayhooks import BasePipelineWrapper


class PipelineWrapper(BasePipelineWrapper):
    def setup(self) -> None:
        self.pipeline = None

    async def run_api_async(self, file: UploadFile) -> str:
        return (await file.read()).decode().upper()
"""

FILE_ANSWERS = """
from pathlib import Path

from fastapi.responses import FileResponse, Response, StreamingResponse

from hayhooks import BasePipelineWrapper


class PipelineWrapper(BasePipelineWrapper):
    def setup(self) -> None:
        self.pipeline = None
        self.report = Path(__file__).parent / "report.csv"

    def run_api(self, kind: str) -> Response:
        if kind == "file":
            return FileResponse(self.report, media_type="text/csv", filename="report.csv")
        if kind == "stream":
            return StreamingResponse(iter([b"a,", b"b,", b"c"]), media_type="text/csv", headers={"x-kind": "stream"})
        return Response(b"\\x89PNG\\r\\n", media_type="image/png", headers={"x-kind": "bytes"})
"""
FILE_ANSWERS_FILES = {"report.csv": "name,value\nalpha,1\n"}

# Takes uploads of /v1/files: says what it saw; content "boom" makes it raise, "list" return a list.
# The id and bytes it returns must not override the store's.
INDEXER = """
import os

from hayhooks import BasePipelineWrapper


class PipelineWrapper(BasePipelineWrapper):
    def setup(self) -> None:
        self.pipeline = None

    def run_api(self, query: str) -> str:
        return query

    def run_file_upload(self, filename, content_type, content, purpose):
        if content == b"boom":
            raise ValueError("cannot index this file")
        if content == b"list":
            return ["not", "a", "dict"]
        return {
            "status": "indexed",
            "indexed_by": os.getpid(),
            "lines": content.count(b"\\n"),
            "seen_type": content_type,
            "id": "file-mine",
            "bytes": 0,
        }
"""

# A Responses API pipeline that answers with the text of the files its input names, read from the
# file store (whichever worker stored them).
FILE_READER = """
from hayhooks import BasePipelineWrapper, get_input_files, open_file


class PipelineWrapper(BasePipelineWrapper):
    def setup(self) -> None:
        self.pipeline = None

    def run_response(self, model: str, input_items: list[dict], body: dict) -> str:
        texts = []
        for part in get_input_files(input_items):
            with open_file(part["file_id"]) as handle:
                texts.append(handle.read().decode())
        return " | ".join(texts)
"""

# Says which worker ran it: MCP answers carry no header, so the tool's text does.
WHOAMI = '''
import os

from hayhooks import BasePipelineWrapper


class PipelineWrapper(BasePipelineWrapper):
    def setup(self) -> None:
        self.pipeline = None

    def run_api(self, tag: str) -> str:
        """Answer the tag and this worker's pid."""
        return f"{tag} from {os.getpid()}"
'''

HIDDEN_FROM_MCP = """
from hayhooks import BasePipelineWrapper


class PipelineWrapper(BasePipelineWrapper):
    skip_mcp = True

    def setup(self) -> None:
        self.pipeline = None

    def run_api(self, text: str) -> str:
        return text
"""

# Pipeline code that raises what is not an Exception: each must be a failed load or run, in JSON.
EXITS_IN_SETUP = """
import sys

from hayhooks import BasePipelineWrapper


class PipelineWrapper(BasePipelineWrapper):
    def setup(self) -> None:
        sys.exit(3)

    def run_api(self, text: str) -> str:
        return text
"""

INTERRUPTS_ON_IMPORT = """
raise KeyboardInterrupt
"""

RAISES_BASE_EXCEPTIONS = """
import sys

from hayhooks import BasePipelineWrapper


class PipelineWrapper(BasePipelineWrapper):
    def setup(self) -> None:
        self.pipeline = None

    def run_api(self, kind: str) -> str:
        if kind == "exit":
            sys.exit(4)
        if kind == "interrupt":
            raise KeyboardInterrupt
        if kind == "generator":
            raise GeneratorExit
        return kind
"""

# Pipeline code that would take its process down: a runtime deploy tries it in a disposable child.
EXITS_ON_IMPORT = """
import os

os._exit(1)
"""

CRASHES_IN_SETUP = """
import ctypes

from hayhooks import BasePipelineWrapper


class PipelineWrapper(BasePipelineWrapper):
    def setup(self) -> None:
        ctypes.string_at(0)  # reads address 0: SIGSEGV

    def run_api(self, text: str) -> str:
        return text
"""

HOGS_MEMORY = """
from hayhooks import BasePipelineWrapper


class PipelineWrapper(BasePipelineWrapper):
    def setup(self) -> None:
        self.weights = bytearray(64 * 1024**3)

    def run_api(self, text: str) -> str:
        return text
"""

PRINTS_ON_IMPORT = """
print('{"id": 1, "error": "not from the checker"}', flush=True)

from hayhooks import BasePipelineWrapper


class PipelineWrapper(BasePipelineWrapper):
    def setup(self) -> None:
        self.pipeline = None

    def run_api(self, text: str) -> str:
        return text
"""

# Loads that never end: in Python code (stoppable), asleep in C, burning a core in C (neither stoppable).
SPINS_IN_SETUP = """
from hayhooks import BasePipelineWrapper


class PipelineWrapper(BasePipelineWrapper):
    def setup(self) -> None:
        while True:
            try:
                pass
            except Exception:  # what careless pipeline code does; LoadAbandoned is not an Exception
                continue

    def run_api(self, text: str) -> str:
        return text
"""

BURNS_IN_C = """
import hashlib

from hayhooks import BasePipelineWrapper


class PipelineWrapper(BasePipelineWrapper):
    def setup(self) -> None:
        hashlib.pbkdf2_hmac("sha256", b"key", b"salt", 2**31 - 1)  # C, without the GIL: about 20 minutes

    def run_api(self, text: str) -> str:
        return text
"""

# A revision that holds 1 MB at module level and a marker a test can hold weakly: once replaced or
# removed, nothing of hayhooks may keep it alive.
LEAKY = '''
from haystack import Pipeline, component

from hayhooks import BasePipelineWrapper


class Marker:
    pass


MARKER = Marker()
BLOB = bytes(1_000_000)
VERSION = {version!r}


@component
class Shout:  # registered with Haystack's component registry, as a wrapper's own components are
    @component.output_types(text=str)
    def run(self, text: str) -> dict:
        return {{"text": text.upper()}}


class PipelineWrapper(BasePipelineWrapper):
    def setup(self) -> None:
        self.pipeline = Pipeline()
        self.pipeline.add_component("shout", Shout())

    def run_api(self, text: str) -> str:
        """Echo the text and the version."""
        return f"{{text}} {{VERSION}}"
'''

# A revision that holds a large module-level object and tells which revisions' markers this worker
# still keeps alive: one weak registry per process (on ``sys``, which outlives every revision).
TRACKED = '''
import gc
import os
import sys
import time
import weakref

from hayhooks import BasePipelineWrapper


class Marker:
    pass


MARKER = Marker()
BLOB = bytes({blob_bytes})
VERSION = {version!r}
ALIVE = sys.__dict__.setdefault("hayhooks_test_markers", weakref.WeakValueDictionary())
ALIVE[VERSION] = MARKER


class PipelineWrapper(BasePipelineWrapper):
    def setup(self) -> None:
        self.pipeline = None

    def run_api(self, delay: float = 0.0) -> dict:
        """The versions whose module-level objects this worker still holds."""
        time.sleep(delay)
        gc.collect()
        return {{"pid": os.getpid(), "alive": sorted(ALIVE, key=int)}}
'''

# setup() fails the first ``failures`` loads in each process, as one whose service is not up yet; every
# load leaves a mark in ``counts/<pid>``, outside the pipeline's folder, so its revision never changes.
FLAKY_SETUP = '''
import os
from pathlib import Path

from hayhooks import BasePipelineWrapper

TRIES = Path({counts!r}) / str(os.getpid())


class PipelineWrapper(BasePipelineWrapper):
    def setup(self) -> None:
        with TRIES.open("a") as marks:
            marks.write("x")
        if TRIES.stat().st_size <= {failures}:
            raise ConnectionError("index not reachable yet")

    def run_api(self) -> int:
        """How many loads this process tried."""
        return TRIES.stat().st_size
'''


def flaky_setup(counts: Path, failures: int) -> str:
    """Wrapper code whose setup() fails its first ``failures`` loads in each process (marks in ``counts``)."""
    counts.mkdir(parents=True, exist_ok=True)
    return wrapper_code(FLAKY_SETUP, counts=str(counts), failures=str(failures))
