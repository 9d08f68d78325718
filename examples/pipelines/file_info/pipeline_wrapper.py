"""file_info: uploads to ``/NAME/run``; a ``files`` parameter makes the route take a multipart form.

Each uploaded file is described (name, media type, size and, for text, its first line) without
reading it whole: uploads past 1 MiB sit in a temp file on disk, removed when the request ends.

    curl -XPOST localhost:1416/file_info/run -F files=@README.md -F files=@Makefile -F preview_chars=40
    hayhooks pipeline run file_info --file README.md --dir docs/ --param preview_chars=40
"""

from typing import Annotated

from fastapi import HTTPException, UploadFile
from pydantic import Field

from hayhooks import BasePipelineWrapper

MAX_FILES = 100  # bound what one request can ask for


class PipelineWrapper(BasePipelineWrapper):
    def setup(self) -> None:
        self.pipeline = None

    def run_api(
        self,
        files: list[UploadFile] | None = None,
        preview_chars: Annotated[int, Field(ge=0, le=1000)] = 80,
    ) -> list[dict]:
        """
        Describe uploaded files.

        Args:
            files: The files to describe (at most 100).
            preview_chars: How much of a text file's first line to show.
        """
        files = files or []
        if len(files) > MAX_FILES:
            raise HTTPException(422, f"At most {MAX_FILES} files per request, got {len(files)}")
        return [self._describe(upload, preview_chars) for upload in files]

    @staticmethod
    def _describe(upload: UploadFile, preview_chars: int) -> dict:
        described = {"filename": upload.filename, "content_type": upload.content_type, "bytes": upload.size}
        if (upload.content_type or "").startswith("text/"):
            first_line = upload.file.readline(4 * preview_chars + 4).decode("utf-8", errors="replace")
            described["preview"] = first_line.rstrip("\r\n")[:preview_chars]
        return described
