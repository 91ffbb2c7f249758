"""A real headless browser for the tests: Debian's chromium, driven over the DevTools protocol on a pipe.

Usage::

    with HeadlessChromium(tmp_path) as browser:          # pytest.fail with the install command if absent
        browser.open("http://127.0.0.1:8090/")
        browser.evaluate("document.title")                # the value, JSON-serialisable
        png = browser.screenshot()                        # what the page shows, PNG bytes

``--remote-debugging-pipe``: chromium reads DevTools commands on its fd 3 and writes answers and events
on its fd 4, one JSON message each, NUL-terminated — no port, no WebSocket library. One page target,
attached with ``flatten``, so commands to it carry its ``sessionId``. The flags are those of the README's
screenshot (root, no sandbox, no GPU, nothing phoning home), in a throw-away profile.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import subprocess
import threading
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest

INSTALL = "apt-get install -y chromium"
WINDOW = (1280, 900)
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
         f"--window-size={WINDOW[0]},{WINDOW[1]}", "--remote-debugging-pipe")
TIMEOUT_S = 60.0


def chromium_path() -> str:
    """chromium's path; the test FAILS (not skips) with the install command when it is not installed."""
    path = shutil.which("chromium")
    if path is None:
        pytest.fail(f"chromium is not installed: {INSTALL} (Debian's; `make test` installs it as root)",
                    pytrace=False)
    return path


class HeadlessChromium:
    """One headless chromium with one page; see the module docstring."""

    def __init__(self, profile_dir: Path) -> None:
        self.profile_dir = profile_dir
        self._next_id = 0
        self._answers: dict[int, dict[str, Any]] = {}
        self._cond = threading.Condition()
        self._closed = False
        self.session: str | None = None

    def __enter__(self) -> HeadlessChromium:
        binary = chromium_path()
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()
        # bash puts the two pipe ends on chromium's fds 3 and 4 (a dup2 after fork, whatever their numbers here)
        self.proc = subprocess.Popen(
            ["bash", "-c", f'exec "$@" 3<&{to_chrome_r} 4>&{from_chrome_w} {to_chrome_r}<&- {from_chrome_w}>&-',
             "chromium", binary, *FLAGS, f"--user-data-dir={self.profile_dir}", "about:blank"],
            pass_fds=(to_chrome_r, from_chrome_w), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        threading.Thread(target=self._read, name="chromium-devtools", daemon=True).start()
        threading.Thread(target=self._drain_stderr, daemon=True).start()
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        return self

    def _drain_stderr(self) -> None:
        assert self.proc.stderr is not None
        self.stderr_tail = b""
        for line in self.proc.stderr:
            self.stderr_tail = (self.stderr_tail + line)[-4000:]

    def _read(self) -> None:
        buffer = b""
        while chunk := os.read(self._from_chrome, 1 << 16):
            buffer += chunk
            *messages, buffer = buffer.split(b"\0")
            for raw in messages:
                message = json.loads(raw)
                if "id" in message:
                    with self._cond:
                        self._answers[message["id"]] = message
                        self._cond.notify_all()
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def call(self, method: str, params: dict[str, Any] | None = None, page: bool = False) -> dict[str, Any]:
        """One DevTools command (to the page's session with ``page=True``); its result, or AssertionError."""
        with self._cond:
            self._next_id += 1
            message_id = self._next_id
        message: dict[str, Any] = {"id": message_id, "method": method, "params": params or {}}
        if page:
            message["sessionId"] = self.session
        os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        with self._cond:
            if not self._cond.wait_for(lambda: message_id in self._answers or self._closed, TIMEOUT_S):
                raise AssertionError(f"chromium did not answer {method} in {TIMEOUT_S:.0f} s")
            if message_id not in self._answers:
                raise AssertionError(f"chromium exited: {getattr(self, 'stderr_tail', b'').decode(errors='replace')}")
            answer = self._answers.pop(message_id)
        assert "error" not in answer, f"{method}: {answer['error']}"
        return answer["result"]

    def open(self, url: str) -> None:
        self.call("Page.navigate", {"url": url}, page=True)

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (returned by value)."""
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True}, page=True)
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return result["result"].get("value")

    def screenshot(self) -> bytes:
        """The page as the browser shows it, PNG."""
        return base64.b64decode(self.call("Page.captureScreenshot", {"format": "png"}, page=True)["data"])

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        with contextlib.suppress(AssertionError, OSError):
            self.call("Browser.close")
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to_chrome)
        os.close(self._from_chrome)
