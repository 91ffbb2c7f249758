"""The local GCS: gcp-storage-emulator in memory, patched to behave like GCS where we depend on it.

Usage::

    python -m deploy.storage_emulator --host 127.0.0.1 --port 9023 --default-bucket frames

    emu = StorageEmulator(default_bucket="frames").start()   # in process, free port, a thread
    os.environ["STORAGE_EMULATOR_HOST"] = emu.url
    ...; emu.wipe(); emu.stop()

Five patches, all touching PRIVATE internals of gcp-storage-emulator ``2026.7.19`` (the version is
pinned in pyproject.toml and checked here; re-read the package source before changing the pin):

(a) ``Storage._write_config_to_file`` re-serialises the metadata of every object on every write
    (O(bucket size) per write); in in-memory mode nothing ever reads that file back, so the patch
    makes it a no-op there. Uploads stay at a few ms each however full the bucket is.
(b) The object-insert handlers ignore ``ifGenerationMatch``. The patch wraps
    ``handlers.objects.insert`` (media, multipart and resumable-session uploads; the Python client
    uses multipart up to 8 MiB and resumable above) and ``handlers.objects.upload_partial`` (the
    resumable chunks; checked again when the last chunk completes the object) so that a failed
    precondition answers HTTP 412 with GCS's JSON error body; ``google-cloud-storage`` then raises
    ``google.api_core.exceptions.PreconditionFailed`` as in production. ``ifGenerationMatch=0``
    means "only if the object does not exist"; any other value must equal the live generation.
    Check and write are atomic because the emulator's HTTP server is single-threaded.
    Not covered: the XML API (``PUT /bucket/object``), copy/rewrite/compose destinations and the
    other preconditions (``ifGenerationNotMatch``, ``ifMetageneration*``).
(d) Object listings ignore ``maxResults``/``pageToken`` and return everything in one page; GCS
    pages at most 1,000 objects. ``handlers.objects.ls`` is replaced by one that pages the same way
    (items in name order, ``nextPageToken``), so clients see production's paging and memory
    behaviour, and that applies ``startOffset``/``endOffset`` (a range of names), which the original
    ignores. It serialises only the page: the original serialised the whole listing for every page.
(e) A simple upload (``uploadType=media``, what the worker writes results with) whose Content-Type
    is ``application/json`` has its body parsed as JSON into a dict, and the upload fails; GCS stores
    the bytes as they are. The insert wrapper reads the body raw for media uploads.
(c) The HTTP server keeps ``http.server``'s listen backlog of 5: with more concurrent clients
    (several download threads, several workers) connections overflow it and wait for TCP
    retransmits (seconds). ``APIThread.run`` is replaced to use a server with a backlog of 128.
    The same replacement gives each connection an idle timeout (:data:`IDLE_TIMEOUT_S`): the server
    serves one connection at a time, so a client that opened a connection and then went quiet (a
    request cut off half-way, a connection left open by a proxy) held it for everyone, forever (seen
    once in tests/e2e/test_faults.py: after a storage outage every client, the collector included,
    timed out for minutes). GCS never lets one client stall the others.
"""

from __future__ import annotations

import argparse
import base64
import functools
import http.server
import logging
import signal
import sys
import threading
import urllib.parse
from collections.abc import Callable, Sequence
from http import HTTPStatus
from importlib import metadata
from typing import Any

PINNED_VERSION = "2026.7.19"

PRECONDITION_MESSAGE = "At least one of the pre-conditions you specified did not hold."

_patch_lock = threading.Lock()
_patched = False

log = logging.getLogger("deploy.storage_emulator")


class StorageEmulatorError(RuntimeError):
    """The storage emulator cannot be patched or started."""


def precondition_failed_body() -> dict[str, Any]:
    """The JSON body GCS sends with a 412 for a failed ``ifGenerationMatch``."""
    return {
        "error": {
            "code": 412,
            "message": PRECONDITION_MESSAGE,
            "errors": [
                {
                    "message": PRECONDITION_MESSAGE,
                    "domain": "global",
                    "reason": "conditionNotMet",
                    "locationType": "header",
                    "location": "If-Match",
                }
            ],
        }
    }


def _check_version() -> None:
    try:
        installed = metadata.version("gcp-storage-emulator")
    except metadata.PackageNotFoundError:
        raise StorageEmulatorError(
            f"gcp-storage-emulator is not installed; install gcp-storage-emulator=={PINNED_VERSION} "
            "(it is in the project's dev extras: pip install -e '.[dev]')"
        ) from None
    if installed != PINNED_VERSION:
        raise StorageEmulatorError(
            f"gcp-storage-emulator {installed} is installed but deploy/storage_emulator.py patches private "
            f"internals of {PINNED_VERSION}; install gcp-storage-emulator=={PINNED_VERSION} or re-check the patches"
        )


def _generation_holds(storage: Any, bucket: str, name: str, wanted: str) -> bool:
    """Whether ``ifGenerationMatch=wanted`` holds for ``bucket/name`` right now."""
    from gcp_storage_emulator.exceptions import NotFound

    try:
        current = storage.get_file_obj(bucket, name)
    except NotFound:
        current = None
    if wanted == "0":
        return current is None
    return current is not None and str(current.get("generation")) == wanted


def _reply_precondition_failed(response: Any) -> None:
    response.status = HTTPStatus.PRECONDITION_FAILED
    response.json(precondition_failed_body())


def _insert_target(request: Any) -> str | None:
    """Object name of an insert request (query ``name`` wins over the metadata's, as in the handler)."""
    if "name" in request.query:
        return request.query["name"][0]
    data = request.data
    if isinstance(data, dict):
        meta = data.get("meta") if "meta" in data else data
        if isinstance(meta, dict):
            return meta.get("name")
    return None


def _preconditions(storage: Any) -> dict[str, str]:
    """Per-storage record of ``upload_id -> ifGenerationMatch`` for open resumable sessions."""
    table = getattr(storage, "_frame_fanout_preconditions", None)
    if table is None:
        table = {}
        storage._frame_fanout_preconditions = table
    return table


def _raw_media_body(request: Any) -> None:
    """Patch (e): a simple (``uploadType=media``) upload's body is the object's bytes, whatever its
    Content-Type; the emulator would ``json.loads`` an ``application/json`` body into a dict and fail."""
    from gcp_storage_emulator import server

    if getattr(request, "_data", None) is server._UNSET:
        handler = request._request_handler
        request._data = server._decode_raw_data(server._read_raw_data(handler), handler)


def _wrap_insert(original: Callable[..., Any]) -> Callable[..., Any]:
    def insert(request: Any, response: Any, storage: Any, *args: Any, **kwargs: Any) -> Any:
        wanted = request.query.get("ifGenerationMatch", [None])[0]
        upload_type = request.query.get("uploadType", [None])[0]
        if upload_type == "media":
            _raw_media_body(request)
        if wanted is None or "upload_id" in request.query:
            return original(request, response, storage, *args, **kwargs)
        _ = request.data  # always drain the body before answering
        name = _insert_target(request)
        bucket = request.params["bucket_name"]
        if name is not None and not _generation_holds(storage, bucket, name, wanted):
            return _reply_precondition_failed(response)
        result = original(request, response, storage, *args, **kwargs)
        if upload_type == "resumable":
            location = response._headers.get("Location")
            if location:
                query = urllib.parse.parse_qs(urllib.parse.urlparse(location).query)
                for upload_id in query.get("upload_id", []):
                    _preconditions(storage)[upload_id] = wanted
        return result

    insert.__wrapped__ = original  # type: ignore[attr-defined]
    return insert


def _wrap_upload_partial(original: Callable[..., Any]) -> Callable[..., Any]:
    def upload_partial(request: Any, response: Any, storage: Any, *args: Any, **kwargs: Any) -> Any:
        upload_id = request.query.get("upload_id", [None])[0]
        table = _preconditions(storage)
        wanted = table.get(upload_id) if upload_id else None
        if wanted is None:
            wanted = request.query.get("ifGenerationMatch", [None])[0]
        if wanted is None:
            return original(request, response, storage, *args, **kwargs)
        _ = request.data  # always drain the body before answering
        obj = storage.resumable.get(upload_id)
        if obj is not None and not _generation_holds(storage, obj["bucket"], obj["name"], wanted):
            table.pop(upload_id, None)
            return _reply_precondition_failed(response)
        result = original(request, response, storage, *args, **kwargs)
        if upload_id not in storage.resumable:  # completed (or gone): forget the precondition
            table.pop(upload_id, None)
        return result

    upload_partial.__wrapped__ = original  # type: ignore[attr-defined]
    return upload_partial


def apply_patches() -> None:
    """Patch gcp-storage-emulator (idempotent; see the module docstring). Raises StorageEmulatorError."""
    global _patched
    with _patch_lock:
        if _patched:
            return
        _check_version()
        from gcp_storage_emulator import server
        from gcp_storage_emulator.handlers import objects
        from gcp_storage_emulator.storage import Storage

        missing = [
            name
            for owner, name in (
                (server.APIThread, "run"),
                (Storage, "_write_config_to_file"),
                (objects, "insert"),
                (objects, "upload_partial"),
                (server, "HANDLERS"),
                (server, "_UNSET"),
                (server, "_read_raw_data"),
                (server, "_decode_raw_data"),
            )
            if not hasattr(owner, name)
        ]
        if missing:
            raise StorageEmulatorError(f"gcp-storage-emulator internals changed, missing: {', '.join(missing)}")

        original_write = Storage._write_config_to_file

        def _write_config_to_file(self: Any) -> None:
            if getattr(self, "_use_memory_fs", False):
                return  # in memory nothing reads the file back; writing it is O(objects) per write
            original_write(self)

        Storage._write_config_to_file = _write_config_to_file

        replacements = {
            objects.insert: _wrap_insert(objects.insert),
            objects.upload_partial: _wrap_upload_partial(objects.upload_partial),
            objects.ls: _paged_ls(),
        }
        replaced = 0
        for _regex, handlers in server.HANDLERS:
            for method, func in list(handlers.items()):
                if func in replacements:
                    handlers[method] = replacements[func]
                    replaced += 1
        if replaced < 3:
            raise StorageEmulatorError("gcp-storage-emulator internals changed: object routes not found in HANDLERS")
        # Module attributes too: the router's fallback and the resumable handler look them up by name.
        objects.insert = replacements[objects.insert]
        objects.upload_partial = replacements[objects.upload_partial]
        objects.ls = replacements[objects.ls]
        server.APIThread.run = _api_thread_run
        _patched = True


MAX_PAGE = 1000
"""GCS's largest page of an object listing (and its default)."""


def _paged_ls() -> Callable[..., Any]:
    """A replacement for ``objects.ls`` of 2026.7.19 that pages like GCS: ``maxResults`` (≤ 1000) and
    ``pageToken``, and honours ``startOffset``/``endOffset`` (names ``>= startOffset``, ``< endOffset``)
    as GCS does (patch (d)).

    Same parameters, statuses and object resources as the original, but only the page is serialised:
    the original serialises every object of the listing on every page request, which made a
    40,000-object listing take ~50 s (40 pages); now it is about one sort of the names per page.
    """
    from gcp_storage_emulator.exceptions import BadRequest, NotFound

    def ls(request: Any, response: Any, storage: Any, *args: Any, **kwargs: Any) -> Any:
        query = request.query

        def first(key: str) -> str | None:
            values = query.get(key)
            return values[0] if values else None

        soft_deleted = (first("softDeleted") or "").lower() in ("1", "true", "yes")
        try:
            files, prefixes = storage.get_file_list(request.params["bucket_name"], first("prefix"),
                                                    first("delimiter"), first("matchGlob"), soft_deleted=soft_deleted)
        except NotFound:
            response.status = HTTPStatus.NOT_FOUND
            return None
        except BadRequest:
            response.status = HTTPStatus.BAD_REQUEST
            return None
        try:
            size = max(min(int(first("maxResults") or MAX_PAGE), MAX_PAGE), 1)
        except ValueError:
            size = MAX_PAGE
        start, end, token = first("startOffset"), first("endOffset"), first("pageToken")
        after = base64.urlsafe_b64decode(token.encode()).decode() if token else None
        items = sorted(
            (item for item in files
             if (not start or item["name"] >= start) and (not end or item["name"] < end)
             and (after is None or item["name"] > after)),
            key=lambda item: item["name"],
        )  # fmt: skip
        page = items[:size]
        body: dict[str, Any] = {"kind": "storage#objects", "prefixes": [] if token else prefixes, "items": page}
        if len(items) > size:
            body["nextPageToken"] = base64.urlsafe_b64encode(page[-1]["name"].encode()).decode()
        response.json(body)
        return None

    return ls


IDLE_TIMEOUT_S = 20.0
"""How long one connection may keep the emulator waiting for the next bytes of a request (patch (c)).
Far above any local request's gaps, below the clients' read timeouts (the worker's 10 s upload read is
retried; the client library's is 60 s), so a stalled connection costs the others one retry, not all."""


class _BackloggedHTTPServer(http.server.HTTPServer):
    request_queue_size = 128


def _timed_handler(idle_timeout_s: float) -> type:
    from gcp_storage_emulator.server import RequestHandler

    return type("TimedRequestHandler", (RequestHandler,), {"timeout": idle_timeout_s})


def _api_thread_run(self: Any) -> None:
    """``APIThread.run`` of 2026.7.19 with a listen backlog of 128 instead of 5 and an idle timeout per
    connection (patch (c))."""
    handler = _timed_handler(getattr(self, "idle_timeout_s", IDLE_TIMEOUT_S))
    self._httpd = _BackloggedHTTPServer((self._host, self._port), functools.partial(handler, self._storage))
    self.is_running.set()
    self._httpd.serve_forever()


class StorageEmulator:
    """The patched in-memory emulator in a thread of this process.

    Usage: ``emu = StorageEmulator().start(); emu.url; emu.wipe(); emu.stop()``
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, default_bucket: str | None = None,
                 idle_timeout_s: float = IDLE_TIMEOUT_S) -> None:
        self.host = host
        self.port = port
        self.default_bucket = default_bucket
        self.idle_timeout_s = idle_timeout_s
        self._server: Any = None

    @property
    def url(self) -> str:
        """``http://host:port`` — the value for ``STORAGE_EMULATOR_HOST``."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> StorageEmulator:
        """Start serving (port 0 → a free port, read back after binding)."""
        apply_patches()
        from gcp_storage_emulator.server import create_server

        server = create_server(self.host, self.port, in_memory=True, default_bucket=self.default_bucket)
        server._api.daemon = True  # private: never keep the interpreter alive if stop() was missed
        server._api.idle_timeout_s = self.idle_timeout_s  # read by the patched APIThread.run
        try:
            server.start()
        except OSError as exc:
            raise StorageEmulatorError(f"storage emulator cannot listen on {self.host}:{self.port}: {exc}") from exc
        httpd = server._api._httpd  # private: the bound HTTPServer, for the real port when port=0
        if httpd is None:
            raise StorageEmulatorError(f"storage emulator failed to start on {self.host}:{self.port}")
        self.port = httpd.server_address[1]
        self._server = server
        return self

    def wipe(self, keep_buckets: bool = False) -> None:
        """Delete all objects (and buckets unless ``keep_buckets``); re-create the default bucket."""
        self._require()
        self._server.wipe(keep_buckets=keep_buckets)
        if self.default_bucket and not keep_buckets:
            from gcp_storage_emulator.handlers import buckets

            buckets.create_bucket(self.default_bucket, self._server._storage)

    def stop(self) -> None:
        """Stop serving (idempotent)."""
        if self._server is not None:
            server, self._server = self._server, None
            server.stop()  # shuts the HTTP server down (its thread's join() is overridden to do that)
            threading.Thread.join(server._api, timeout=5)

    def _require(self) -> None:
        if self._server is None:
            raise StorageEmulatorError("storage emulator is not running")

    def __enter__(self) -> StorageEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point: serve until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(prog="python -m deploy.storage_emulator", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9023, help="0 picks a free port (printed at start)")
    parser.add_argument("--default-bucket", default=None, help="bucket to create at start")
    parser.add_argument("--log-level", default="WARNING", help="python logging level (INFO logs every request)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")

    stopped = threading.Event()

    def _stop(signum: int, _frame: object) -> None:
        stopped.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        emu = StorageEmulator(args.host, args.port, args.default_bucket).start()
    except StorageEmulatorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"storage emulator (gcp-storage-emulator {PINNED_VERSION}, patched, in memory) listening on {emu.url}",
          flush=True)
    stopped.wait()
    emu.stop()
    print("storage emulator stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
