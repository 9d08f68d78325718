"""A ``multipart/form-data`` body streamed from files, for ``hayhooks pipeline run --file/--dir``.

The CLI talks with the standard library's client (see :mod:`hayhooks.cli.client`), which has no
multipart encoder; this one reads each file in chunks while sending, so an upload of any size takes
no more memory than a chunk, and the length is known up front (no chunked transfer encoding).
"""

import mimetypes
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

FILES_FIELD = "files"  # the field the published CLI sends files in; run_api(files: list[UploadFile])
_CHUNK = 1024 * 1024


def _quoted(value: str) -> str:
    """A name or filename inside ``Content-Disposition`` quotes, escaped as browsers do."""
    return value.replace("\\", "\\\\").replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")


@dataclass
class MultipartBody:
    """Text fields and files as one form body; iterate :meth:`chunks` to send it."""

    fields: dict[str, str]
    files: list[Path]
    boundary: str = field(default_factory=lambda: secrets.token_hex(16))

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    def _field_head(self, name: str) -> bytes:
        return f'--{self.boundary}\r\nContent-Disposition: form-data; name="{_quoted(name)}"\r\n\r\n'.encode()

    def _file_head(self, path: Path) -> bytes:
        media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return (
            f"--{self.boundary}\r\n"
            f'Content-Disposition: form-data; name="{FILES_FIELD}"; filename="{_quoted(path.name)}"\r\n'
            f"Content-Type: {media_type}\r\n\r\n"
        ).encode()

    def _end(self) -> bytes:
        return f"--{self.boundary}--\r\n".encode()

    def __len__(self) -> int:
        texts = sum(len(self._field_head(name)) + len(value.encode()) + 2 for name, value in self.fields.items())
        files = sum(len(self._file_head(path)) + path.stat().st_size + 2 for path in self.files)
        return texts + files + len(self._end())

    def chunks(self) -> Iterator[bytes]:
        for name, value in self.fields.items():
            yield self._field_head(name) + value.encode() + b"\r\n"
        for path in self.files:
            yield self._file_head(path)
            with path.open("rb") as file:
                while chunk := file.read(_CHUNK):
                    yield chunk
            yield b"\r\n"
        yield self._end()
