"""The Files API on gunicorn with 3 workers, driven by the official ``openai`` client: a file stored
through one worker is read back, listed and deleted through every other one; ``run_file_upload``
is called; ids never leave the store; a chat pipeline reads a file another worker stored."""

import os
from pathlib import Path

import httpx
import openai
import pytest

from tests.helpers import pipelines as samples
from tests.helpers.openai_client import fresh_client, from_every_worker
from tests.helpers.support import Server, start_gunicorn, wait_until

LIMIT = 4 * 1024 * 1024
TEXT = b"first line\nsecond line\n"


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("files")
    return {"root": root, "pipelines": root / "pipelines", "store": root / "store", "spool": root / "spool"}


@pytest.fixture(scope="module")
def server(folders: dict[str, Path]):
    samples.write_wrapper(folders["pipelines"], "indexer", samples.INDEXER)
    samples.write_wrapper(folders["pipelines"], "reader", samples.FILE_READER)
    samples.write_wrapper(folders["pipelines"], "greet", samples.GREET, samples.GREET_FILES)
    folders["spool"].mkdir()
    started = start_gunicorn(
        folders["pipelines"],
        folders["root"],
        3,
        HAYHOOKS_FILES_DIR=str(folders["store"]),
        HAYHOOKS_MAX_UPLOAD_BYTES=str(LIMIT),
        HAYHOOKS_RUNTIME_DIR=str(folders["root"] / "runtime"),
        TMPDIR=str(folders["spool"]),
    )
    try:
        yield started.wait_ready()
    finally:
        started.stop()


def stored_ids(folders: dict[str, Path]) -> set[str]:
    """What the store folder holds (staging and trash included: none may be left over)."""
    return {entry.name for entry in folders["store"].iterdir()} if folders["store"].exists() else set()


def test_a_file_stored_by_one_worker_is_read_back_through_every_worker(server: Server, folders):
    created = fresh_client(server).files.with_raw_response.create(
        file=("notes.txt", TEXT, "text/plain"), purpose="assistants"
    )
    stored = created.parse()
    assert stored.id.startswith("file-") and stored.bytes == len(TEXT) and stored.filename == "notes.txt"
    assert stored.id in stored_ids(folders)

    retrieved = from_every_worker(server, lambda client: client.files.with_raw_response.retrieve(stored.id))
    assert {(file.id, file.bytes, file.filename, file.purpose) for file in retrieved.values()} == {
        (stored.id, len(TEXT), "notes.txt", "assistants")
    }
    contents = from_every_worker(server, lambda client: client.files.with_raw_response.content(stored.id))
    assert {content.read() for content in contents.values()} == {TEXT}
    listed = from_every_worker(server, lambda client: client.files.with_raw_response.list())
    assert all(stored.id in {file.id for file in page.data} for page in listed.values())


def test_run_file_upload_is_called_and_what_it_answers_is_kept(server: Server):
    """The first pipeline by name that implements run_file_upload takes the file: ``indexer``."""
    stored = fresh_client(server).files.create(file=("notes.txt", TEXT, "text/plain"), purpose="user_data")
    extra = stored.model_extra or {}
    assert stored.status == "indexed" and extra["lines"] == 2 and extra["seen_type"] == "text/plain"
    assert extra["indexed_by"] in server.worker_pids()
    assert stored.id != "file-mine" and stored.bytes == len(TEXT)  # the store's own fields win
    again = from_every_worker(server, lambda client: client.files.with_raw_response.retrieve(stored.id))
    assert {(file.status, (file.model_extra or {})["indexed_by"]) for file in again.values()} == {
        ("indexed", extra["indexed_by"])
    }


def test_a_failing_run_file_upload_answers_500_and_keeps_nothing(server: Server, folders):
    before = stored_ids(folders)
    with pytest.raises(openai.InternalServerError, match="cannot index this file"):
        fresh_client(server).files.create(file=("bad.txt", b"boom"), purpose="user_data")
    assert stored_ids(folders) == before


def test_a_client_picks_the_pipeline_and_unfit_ones_are_refused(server: Server):
    client = fresh_client(server)
    stored = client.files.create(file=("a.txt", TEXT), purpose="assistants", extra_query={"pipeline": "indexer"})
    assert stored.status == "indexed"
    with pytest.raises(openai.NotFoundError, match="No pipeline named 'nope'"):
        client.files.create(file=("a.txt", TEXT), purpose="assistants", extra_query={"pipeline": "nope"})
    with pytest.raises(openai.APIStatusError, match="does not implement run_file_upload") as refused:
        client.files.create(file=("a.txt", TEXT), purpose="assistants", extra_query={"pipeline": "greet"})
    assert refused.value.status_code == 501


def test_a_pipeline_deployed_at_runtime_takes_uploads_on_every_worker(server: Server):
    deployed = httpx.post(
        f"{server.url}/deploy_files",
        json={"name": "late_indexer", "files": samples.wrapper_files(samples.INDEXER), "wait": True},
        timeout=60,
    )
    assert deployed.status_code == 200, deployed.text
    answers = from_every_worker(
        server,
        lambda client: client.files.with_raw_response.create(
            file=("a.txt", TEXT), purpose="assistants", extra_query={"pipeline": "late_indexer"}
        ),
    )
    assert {file.status for file in answers.values()} == {"indexed"}


def test_a_file_deleted_through_one_worker_is_gone_from_every_worker(server: Server, folders):
    client = fresh_client(server)
    stored = client.files.create(file=("gone.txt", TEXT), purpose="assistants")
    deleted = client.files.delete(stored.id)
    assert deleted.deleted and deleted.id == stored.id
    assert stored.id not in stored_ids(folders)

    def refused(fresh: openai.OpenAI) -> int:
        try:
            fresh.files.retrieve(stored.id)
        except openai.NotFoundError as error:
            return int(error.response.headers["x-hayhooks-worker"])
        raise AssertionError("a deleted file was still served")

    seen: set[int] = set()
    wait_until(lambda: seen.add(refused(fresh_client(server))) or seen == server.worker_pids(), 30, interval=0)
    with pytest.raises(openai.NotFoundError):
        client.files.delete(stored.id)


def test_listing_filters_by_purpose_and_pages_through_every_file(server: Server):
    client = fresh_client(server)
    made = [client.files.create(file=(f"{n}.txt", TEXT), purpose="batch").id for n in range(5)]
    page = client.files.list(purpose="batch", limit=2, order="asc")
    assert [file.id for file in page.data] == made[:2] and page.has_more
    assert [file.id for file in client.files.list(purpose="batch", limit=2, order="asc")] == made  # every page
    assert [file.id for file in client.files.list(purpose="batch", order="desc").data] == made[::-1]


@pytest.mark.parametrize(
    "file_id",
    [
        "..%2F..%2Fpipelines%2Fgreet%2Fpipeline_wrapper.py",
        "file-..",
        "%2e%2e",
        "file-" + "A" * 32,
        "file-" + "0" * 32 + "%2F..%2F..",
        "file-" + "0" * 31,
    ],
)
def test_an_id_never_resolves_outside_the_store(server: Server, file_id: str):
    for path in (f"/v1/files/{file_id}", f"/v1/files/{file_id}/content"):
        answer = httpx.get(f"{server.url}{path}", timeout=10)
        assert answer.status_code == 404, (path, answer.text)
        assert b"PipelineWrapper" not in answer.content
    assert httpx.delete(f"{server.url}/v1/files/{file_id}", timeout=10).status_code == 404


def test_an_upload_over_the_limit_answers_413_and_leaves_nothing(server: Server, folders):
    before = stored_ids(folders)
    too_big = os.urandom(LIMIT + 1024)
    with pytest.raises(openai.APIStatusError) as refused:
        fresh_client(server).files.create(file=("big.bin", too_big), purpose="assistants")
    assert refused.value.status_code == 413
    assert stored_ids(folders) == before
    wait_until(lambda: not any(folders["spool"].iterdir()), 10, message="no temp file left")


def test_a_responses_pipeline_reads_a_file_another_worker_stored(server: Server):
    stored = fresh_client(server).files.create(file=("doc.txt", b"the stored words"), purpose="user_data")
    question = [
        {
            "role": "user",
            "content": [{"type": "input_file", "file_id": stored.id}, {"type": "input_text", "text": "read it"}],
        }
    ]
    answers = from_every_worker(
        server, lambda client: client.responses.with_raw_response.create(model="reader", input=question)
    )
    assert {response.output_text for response in answers.values()} == {"the stored words"}
