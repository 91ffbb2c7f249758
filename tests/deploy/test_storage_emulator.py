"""The patched storage emulator behaves like GCS where the project depends on it."""

from __future__ import annotations

import os

import pytest
import requests
from google.api_core.exceptions import PreconditionFailed

from deploy import storage_emulator as se
from framecontract.clients import make_storage_client
from framecontract.settings import Settings

BIG = 9 * 1024 * 1024  # above google-cloud-storage's 8 MiB multipart limit → resumable upload


def _bucket(settings: Settings):
    return make_storage_client(settings).bucket(settings.bucket)


def test_create_only_small_upload_raises_precondition_failed(gcs_settings: Settings) -> None:
    bucket = _bucket(gcs_settings)
    bucket.blob("jobs/j/detections/0/a.json").upload_from_string(
        b'{"first": true}', content_type="application/json", if_generation_match=0
    )
    with pytest.raises(PreconditionFailed) as info:
        bucket.blob("jobs/j/detections/0/a.json").upload_from_string(b'{"second": true}', if_generation_match=0)
    assert info.value.code == 412
    assert "pre-conditions you specified did not hold" in info.value.message
    blob = bucket.get_blob("jobs/j/detections/0/a.json")
    assert blob.download_as_bytes() == b'{"first": true}'
    assert blob.content_type == "application/json"


def test_create_only_large_resumable_upload(gcs_settings: Settings) -> None:
    bucket = _bucket(gcs_settings)
    first, second = os.urandom(BIG), os.urandom(BIG)
    bucket.blob("jobs/j/payloads/1/big.jpg").upload_from_string(first, if_generation_match=0)
    with pytest.raises(PreconditionFailed):
        bucket.blob("jobs/j/payloads/1/big.jpg").upload_from_string(second, if_generation_match=0)
    # chunked resumable upload (several PUTs) is refused too
    with pytest.raises(PreconditionFailed):
        bucket.blob("jobs/j/payloads/1/big.jpg", chunk_size=2 * 1024 * 1024).upload_from_string(
            second, if_generation_match=0
        )
    assert bucket.blob("jobs/j/payloads/1/big.jpg").download_as_bytes() == first


def test_resumable_precondition_checked_again_when_the_upload_completes(gcs_settings: Settings) -> None:
    bucket = _bucket(gcs_settings)
    session_url = bucket.blob("race.bin").create_resumable_upload_session(size=3, if_generation_match=0)
    bucket.blob("race.bin").upload_from_string(b"won", if_generation_match=0)  # another writer wins
    resp = requests.put(session_url, data=b"out", headers={"Content-Range": "bytes 0-2/3"}, timeout=10)
    assert resp.status_code == 412, resp.text
    assert resp.json()["error"]["errors"][0]["reason"] == "conditionNotMet"
    assert bucket.blob("race.bin").download_as_bytes() == b"won"


def test_generation_match_nonzero(gcs_settings: Settings) -> None:
    bucket = _bucket(gcs_settings)
    bucket.blob("g.txt").upload_from_string(b"one")
    generation = bucket.get_blob("g.txt").generation
    bucket.blob("g.txt").upload_from_string(b"two", if_generation_match=generation)
    with pytest.raises(PreconditionFailed):
        bucket.blob("g.txt").upload_from_string(b"three", if_generation_match=generation)  # stale
    assert bucket.blob("g.txt").download_as_bytes() == b"two"


def test_upload_without_precondition_still_overwrites(gcs_settings: Settings) -> None:
    bucket = _bucket(gcs_settings)
    bucket.blob("o.txt").upload_from_string(b"one")
    bucket.blob("o.txt").upload_from_string(b"two")
    assert bucket.blob("o.txt").download_as_bytes() == b"two"


def test_listing_download_and_metadata_after_patches(gcs_settings: Settings) -> None:
    client = make_storage_client(gcs_settings)
    bucket = client.bucket(gcs_settings.bucket)
    names = [f"jobs/a/frames/{i % 3}/{i:04d}.jpg" for i in range(30)] + ["jobs/b/manifest.json", "top.txt"]
    for name in names:
        blob = bucket.blob(name)
        blob.metadata = {"origin": "test"}
        blob.upload_from_string(name.encode(), content_type="image/jpeg", if_generation_match=0)

    listed = [b.name for b in client.list_blobs(gcs_settings.bucket, prefix="jobs/a/")]
    assert listed == sorted(n for n in names if n.startswith("jobs/a/"))
    assert [b.name for b in client.list_blobs(gcs_settings.bucket, prefix="jobs/a/frames/2/")] == sorted(
        n for n in names if n.startswith("jobs/a/frames/2/")
    )
    iterator = client.list_blobs(gcs_settings.bucket, prefix="jobs/", delimiter="/")
    assert list(iterator) == []
    assert iterator.prefixes == {"jobs/a/", "jobs/b/"}

    blob = bucket.get_blob("jobs/a/frames/1/0004.jpg")
    assert blob.metadata == {"origin": "test"}
    assert blob.content_type == "image/jpeg"
    assert blob.size == len(b"jobs/a/frames/1/0004.jpg")
    assert blob.download_as_bytes() == b"jobs/a/frames/1/0004.jpg"
    assert bucket.blob("nope").exists() is False


def test_in_memory_mode_writes_no_metadata_file() -> None:
    with se.StorageEmulator(default_bucket="b") as emu:
        session = requests.Session()
        resp = session.post(f"{emu.url}/upload/storage/v1/b/b/o?uploadType=media&name=x", data=b"abc", timeout=10)
        assert resp.status_code == 200, resp.text
        storage = emu._server._storage  # the emulator's private store: the patch's whole point
        assert storage.objects["b"]["x"]["size"] == "3"
        assert not storage._store.exists_file(".meta")


def test_wipe_recreates_default_bucket(monkeypatch: pytest.MonkeyPatch) -> None:
    with se.StorageEmulator(default_bucket="keep") as emu:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", emu.url)  # restored after the test
        settings = Settings(project="p", bucket="keep", storage_emulator_host=emu.url)
        client = make_storage_client(settings)
        client.bucket("keep").blob("x").upload_from_string(b"1")
        client.create_bucket("other")
        emu.wipe()
        assert list(client.list_blobs("keep")) == []
        assert [b.name for b in client.list_buckets()] == ["keep"]


def test_wrong_emulator_version_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(se.metadata, "version", lambda _name: "2099.1.1")
    with pytest.raises(se.StorageEmulatorError, match=r"2099\.1\.1 is installed .* 2026\.7\.19"):
        se._check_version()


def test_precondition_body_matches_gcs() -> None:
    body = se.precondition_failed_body()["error"]
    assert body["code"] == 412
    assert body["errors"][0]["reason"] == "conditionNotMet"


def test_many_concurrent_clients_fit_the_listen_backlog() -> None:
    """Patch (c): 40 connections opened at once are all accepted into the backlog (not dropped)."""
    import socket

    with se.StorageEmulator(default_bucket="backlog") as emu:
        assert emu._server._api._httpd.request_queue_size == 128
        host, port = emu.url.removeprefix("http://").split(":")
        sockets = [socket.create_connection((host, int(port)), timeout=5) for _ in range(40)]
        for sock in sockets:
            sock.close()
        assert requests.get(f"{emu.url}/storage/v1/b/backlog", timeout=10).json()["name"] == "backlog"


def test_listings_page_like_gcs(gcs_settings: Settings) -> None:
    """Patch (d): pages of at most maxResults (≤ 1000) in name order, with nextPageToken."""
    client = make_storage_client(gcs_settings)
    bucket = client.bucket(gcs_settings.bucket)
    names = [f"p/{i:04d}" for i in range(25)]
    for name in reversed(names):
        bucket.blob(name).upload_from_string(b"x")
    bucket.blob("q/other").upload_from_string(b"x")
    pages = client.list_blobs(bucket.name, prefix="p/", max_results=None, page_size=10).pages
    sizes_and_names = [[b.name for b in page] for page in pages]
    assert [len(p) for p in sizes_and_names] == [10, 10, 5]
    assert [n for p in sizes_and_names for n in p] == names
    url = f"{gcs_settings.storage_emulator_host}/storage/v1/b/{bucket.name}/o"
    body = requests.get(url, params={"maxResults": 5000}, timeout=10).json()
    assert len(body["items"]) == 26 and "nextPageToken" not in body
    listing = client.list_blobs(bucket.name, delimiter="/")
    assert list(listing) == [] and set(listing.prefixes) == {"p/", "q/"}
    ranged = client.list_blobs(bucket.name, prefix="p/", start_offset="p/0007", end_offset="p/0019", page_size=5)
    assert [b.name for b in ranged] == names[7:19]
    assert [b.name for b in client.list_blobs(bucket.name, start_offset="p/0023")] == [*names[23:], "q/other"]


def test_simple_media_upload_keeps_a_json_body_as_bytes_and_is_create_only(gcs_settings: Settings) -> None:
    """Patch (e): uploadType=media stores the body as sent, JSON included; ifGenerationMatch=0 gives 412."""
    from framecontract.gcshttp import create_only_upload_url

    body = b'{"b": 1,  "a": [2]}'  # not what json.dumps(json.loads(body)) would give
    url = create_only_upload_url(gcs_settings.storage_emulator_host or "", gcs_settings.bucket, "jobs/x/r.json")
    first = requests.post(url, data=body, headers={"Content-Type": "application/json"}, timeout=10)
    assert first.status_code == 200, first.text
    assert first.json()["name"] == "jobs/x/r.json" and first.json()["contentType"] == "application/json"
    again = requests.post(url, data=b"{}", headers={"Content-Type": "application/json"}, timeout=10)
    assert again.status_code == 412
    blob = make_storage_client(gcs_settings).bucket(gcs_settings.bucket).blob("jobs/x/r.json")
    assert blob.download_as_bytes() == body


def test_a_quiet_connection_does_not_hold_the_emulator_for_everyone() -> None:
    """The emulator serves one connection at a time: a client that sent half a request and went quiet is cut
    off after the idle timeout, and the next client is served (before patch (c)'s timeout: never)."""
    import socket
    import time

    with se.StorageEmulator(default_bucket="b", idle_timeout_s=1.0) as emu:
        with socket.create_connection(("127.0.0.1", emu.port)) as quiet:
            quiet.sendall(b"POST /upload/storage/v1/b/b/o?uploadType=media&name=x HTTP/1.1\r\nHost: x\r\n"
                          b"Content-Length: 100\r\n\r\nhalf")
            time.sleep(0.2)  # the server is now reading the quiet one's body
            answer = requests.get(f"{emu.url}/storage/v1/b/b/o", timeout=30)  # without the timeout: ReadTimeout
        assert answer.status_code == 200 and answer.json()["items"] == []
