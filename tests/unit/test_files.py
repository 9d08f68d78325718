"""The file store and the Files API in one process: ids, listing, atomic writes, refusals."""

import io
import os
import time
from pathlib import Path

import pytest

from hayhooks.cluster import files as file_store
from hayhooks.cluster.files import FileStore, FileStoreUnavailable
from hayhooks.pipelines.names import FILE_STORE_DIR
from tests.helpers import pipelines as samples


@pytest.fixture
def store(tmp_path: Path) -> FileStore:
    return FileStore(tmp_path / "store")


def add(store: FileStore, content: bytes = b"data", purpose: str = "assistants", name: str = "a.txt"):
    return store.add(io.BytesIO(content), filename=name, content_type="text/plain", purpose=purpose)


def test_a_stored_file_reads_back_with_its_object(store: FileStore):
    stored = add(store, b"hello")
    assert stored.content.read_bytes() == b"hello"
    again = store.get(stored.id)
    assert again is not None and again.wire() == stored.wire()
    assert stored.wire() == {
        "id": stored.id,
        "object": "file",
        "bytes": 5,
        "created_at": stored.created_at,
        "filename": "a.txt",
        "purpose": "assistants",
        "status": "processed",
    }
    assert abs(stored.created_at - time.time()) < 5


def test_ids_are_random_and_only_ever_name_a_folder_of_the_store(store: FileStore, tmp_path: Path):
    ids = {add(store).id for _ in range(20)}
    assert len(ids) == 20 and all(file_store.is_file_id(file_id) for file_id in ids)
    (tmp_path / "secret").mkdir()
    (tmp_path / "secret" / "meta.json").write_text("{}")
    for forged in ["../secret", "file-../../secret", "/etc/passwd", "", "file-" + "g" * 32, "FILE-" + "0" * 32]:
        assert store.get(forged) is None and not store.delete(forged)


def test_listing_orders_filters_and_pages(store: FileStore):
    made = [add(store, purpose="batch" if n % 2 else "assistants").id for n in range(6)]
    newest_first, more = store.list()
    assert [stored.id for stored in newest_first] == made[::-1] and not more
    batch, _ = store.list(purpose="batch", order="asc")
    assert [stored.id for stored in batch] == made[1::2]
    first, more = store.list(limit=2, order="asc")
    assert [stored.id for stored in first] == made[:2] and more
    rest, more = store.list(limit=10, order="asc", after=made[1])
    assert [stored.id for stored in rest] == made[2:] and not more
    assert store.list(after="file-" + "0" * 32) == ([], False)


def test_annotating_adds_fields_but_never_changes_the_stores_own(store: FileStore):
    stored = add(store, b"12345")
    changed = store.annotate(stored.id, {"id": "x", "bytes": 0, "status": "indexed", "chunks": 3, "purpose": "rag"})
    assert changed.wire() == {**stored.wire(), "status": "indexed", "chunks": 3, "purpose": "rag"}
    assert store.get(stored.id).wire() == changed.wire()


def test_a_deleted_file_is_gone_and_leaves_nothing(store: FileStore):
    stored = add(store)
    assert store.delete(stored.id) and store.get(stored.id) is None and not store.delete(stored.id)
    assert list(store.root.iterdir()) == []


def test_a_copy_that_fails_midway_leaves_nothing(store: FileStore):
    class Failing(io.RawIOBase):
        def readinto(self, buffer) -> int:
            raise OSError("the disk is full")

    with pytest.raises(OSError, match="the disk is full"):
        store.add(Failing(), filename="a", content_type=None, purpose="assistants")
    assert list(store.root.iterdir()) == []


def test_a_store_that_cannot_be_created_says_where_it_is(tmp_path: Path):
    (tmp_path / "a-file").write_text("")
    with pytest.raises(FileStoreUnavailable, match="a-file"):
        add(FileStore(tmp_path / "a-file" / "store"))


def test_a_sweep_removes_only_stale_leftovers(store: FileStore):
    kept = add(store)
    stale, fresh = store.root / ".staging-file-dead", store.root / ".trash-file-new"
    stale.mkdir()
    fresh.mkdir()
    old = time.time() - 7200
    os.utime(stale, (old, old))
    store.sweep()
    assert {entry.name for entry in store.root.iterdir()} == {kept.id, fresh.name}


def test_the_helpers_open_a_file_of_the_configured_store(store: FileStore):
    stored = add(store, b"words")
    file_store.configure_file_store(store)
    with file_store.open_file(stored.id) as handle:
        assert handle.read() == b"words"
    assert file_store.file_path(stored.id) == stored.content
    with pytest.raises(FileNotFoundError, match="No stored file"):
        file_store.open_file("../../etc/passwd")


def test_the_default_store_is_a_private_folder_of_the_pipelines_directory(make_client, pipelines_dir: Path):
    client = make_client()
    answer = client.post("/v1/files", files={"file": ("a.txt", b"hi")}, data={"purpose": "assistants"})
    assert answer.status_code == 200, answer.text
    assert (pipelines_dir / FILE_STORE_DIR / answer.json()["id"] / "content").read_bytes() == b"hi"
    assert client.get("/status").json()["details"] == []  # never mistaken for a pipeline


def test_the_api_token_guards_the_files_api(make_client):
    client = make_client(api_token="secret")
    refused = client.get("/v1/files")
    assert refused.status_code == 401 and refused.json()["error"]["type"] == "authentication_error"
    allowed = client.get("/v1/files", headers={"Authorization": "Bearer secret"})
    assert allowed.status_code == 200 and allowed.json()["data"] == []


def test_an_unwritable_store_answers_503_naming_the_setting(make_client, tmp_path: Path):
    (tmp_path / "a-file").write_text("")
    client = make_client(files_dir=tmp_path / "a-file" / "store")
    answer = client.post("/v1/files", files={"file": ("a.txt", b"hi")}, data={"purpose": "assistants"})
    assert answer.status_code == 503 and "HAYHOOKS_FILES_DIR" in answer.json()["error"]["message"]


@pytest.mark.parametrize(
    ("data", "files", "problem"),
    [
        ({}, {"file": ("a.txt", b"hi")}, "purpose"),
        ({"purpose": ""}, {"file": ("a.txt", b"hi")}, "purpose"),
        ({"purpose": "anything"}, {"file": ("a.txt", b"hi")}, "purpose"),
        ({"purpose": "assistants", "file": "not a file"}, None, "file"),
        ({"purpose": "assistants"}, None, "file"),
    ],
)
def test_a_bad_upload_answers_422_naming_the_field(make_client, data, files, problem):
    answer = make_client().post("/v1/files", data=data, files=files)
    assert answer.status_code == 422 and problem in answer.json()["error"]["message"]


def test_a_returned_value_that_is_not_a_dict_fails_the_upload_and_keeps_nothing(make_client, pipelines_dir: Path):
    code = samples.INDEXER.replace(
        'if content == b"boom":', 'if content == b"list":\n            return [1]\n        if 0:'
    )
    samples.write_wrapper(pipelines_dir, "indexer", code)
    client = make_client()
    answer = client.post("/v1/files", files={"file": ("a.txt", b"list")}, data={"purpose": "assistants"})
    assert answer.status_code == 500 and "returned list" in answer.json()["error"]["message"]
    assert client.get("/v1/files").json()["data"] == []
