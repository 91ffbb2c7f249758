"""Start and stop the local emulators: Google's official Pub/Sub emulator and the patched GCS emulator.

Usage::

    pubsub = start_pubsub_emulator(log_path=Path("pubsub.log"))     # free port unless port= is given
    os.environ["PUBSUB_EMULATOR_HOST"] = pubsub.host_port              # "127.0.0.1:PORT"
    storage = start_storage_emulator(log_path=Path("storage.log"))  # python -m deploy.storage_emulator
    ...
    pubsub.stop(); storage.stop()

Each emulator runs in its own process group (so stopping it also stops anything it started) with its
output in a log file; the Pub/Sub emulator logs a Java stack trace for every failed push.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

FALLBACK_SDK_ROOTS = (Path("/usr/lib/google-cloud-sdk"), Path("/usr/share/google-cloud-sdk"))
EMULATOR_RELPATH = Path("platform/pubsub-emulator/bin/cloud-pubsub-emulator")
JAVA_MIN_VERSION = 17

PUBSUB_INSTALL_HINT = (
    "the Google Cloud Pub/Sub emulator is not installed: install it with "
    "`gcloud components install pubsub-emulator`, or on Debian/Ubuntu with the "
    "`google-cloud-cli-pubsub-emulator` package (apt-get install google-cloud-cli-pubsub-emulator)"
)
JAVA_INSTALL_HINT = (
    f"the Pub/Sub emulator needs Java {JAVA_MIN_VERSION} or newer: install it with "
    "`apt-get install openjdk-17-jre-headless` (or point JAVA_HOME at a Java 17+ runtime)"
)

REPO_ROOT = Path(__file__).resolve().parent.parent
START_MARKER = "=== frame-fanout: starting"


class EmulatorError(RuntimeError):
    """An emulator could not be found, started or stopped."""


class EmulatorNotInstalled(EmulatorError):
    """A required program is missing; the message says what to install."""


# ---------------------------------------------------------------- locating things


@functools.lru_cache(maxsize=1)
def gcloud_sdk_root(timeout: float = 20.0) -> Path | None:
    """The Cloud SDK root from ``gcloud info`` (works offline, ~1 s; cached), or None if gcloud is absent or fails."""
    gcloud = shutil.which("gcloud")
    if not gcloud:
        return None
    env = dict(os.environ, CLOUDSDK_CORE_DISABLE_PROMPTS="1")
    try:
        out = subprocess.run(
            [gcloud, "info", "--format=value(installation.sdk_root)"],
            capture_output=True, text=True, timeout=timeout, env=env, check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    root = out.stdout.strip()
    return Path(root) if out.returncode == 0 and root else None


def find_pubsub_emulator(
    emulator_path: Path | None = None, sdk_roots: tuple[Path, ...] | None = None
) -> Path:
    """The ``cloud-pubsub-emulator`` launcher: ``emulator_path`` if given, else ``<sdk root>/platform/...``.

    ``sdk_roots`` defaults to gcloud's SDK root followed by the usual install paths.
    Raises EmulatorNotInstalled with the install command.
    """
    if emulator_path is not None:
        candidates = [Path(emulator_path)]
    else:
        if sdk_roots is None:
            found = gcloud_sdk_root()
            sdk_roots = ((found,) if found else ()) + FALLBACK_SDK_ROOTS
        candidates = [root / EMULATOR_RELPATH for root in sdk_roots]
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    looked = ", ".join(str(c) for c in candidates) or "(nowhere)"
    raise EmulatorNotInstalled(f"{PUBSUB_INSTALL_HINT}; looked for: {looked}")


def parse_java_major(version_output: str) -> int | None:
    """The major version from ``java -version`` output (``"17.0.15"`` → 17, ``"1.8.0_392"`` → 8)."""
    match = re.search(r'version "(\d+)(?:\.(\d+))?', version_output)
    if not match:
        return None
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


def find_java() -> str:
    """A Java 17+ ``java`` (``$JAVA_HOME/bin/java`` first, like the launcher). Raises EmulatorNotInstalled."""
    java_home = os.environ.get("JAVA_HOME")
    java = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
    if not java or not os.access(java, os.X_OK):
        where = f"JAVA_HOME={java_home} has no bin/java" if java_home else "no `java` on PATH"
        raise EmulatorNotInstalled(f"{JAVA_INSTALL_HINT} ({where})")
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EmulatorNotInstalled(f"{JAVA_INSTALL_HINT} ({java} -version failed: {exc})") from exc
    major = parse_java_major(out.stderr + out.stdout)
    if major is None or major < JAVA_MIN_VERSION:
        raise EmulatorNotInstalled(f"{JAVA_INSTALL_HINT} ({java} is version {major or 'unknown'})")
    return java


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (bind to port 0 and release it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_in_use(host: str, port: int) -> bool:
    """Whether something accepts connections on host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def log_tail(path: Path | None, lines: int = 30) -> str:
    """The last ``lines`` lines of a log file ('' if unreadable)."""
    return "\n".join(_last_run(path)[-lines:])


def log_excerpt(path: Path | None, head: int = 15, tail: int = 25) -> str:
    """The current run's log (since spawn()'s ``=== starting`` line), first ``head`` and last ``tail`` lines.

    The head matters too: gunicorn prints why a worker failed to boot before a long shutdown traceback.
    """
    lines = _last_run(path)
    if len(lines) <= head + tail:
        return "\n".join(lines)
    return "\n".join([*lines[:head], f"  [... {len(lines) - head - tail} lines ...]", *lines[-tail:]])


def _last_run(path: Path | None) -> list[str]:
    if path is None:
        return []
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 256 * 1024))
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return []
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith(START_MARKER)]
    return lines[starts[-1] + 1 :] if starts else lines


# ---------------------------------------------------------------- processes


def _stat_fields(pid: int | str) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (state first), or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2 :].split()


def process_start_time(pid: int) -> int | None:
    """Kernel start time of ``pid`` (clock ticks since boot) from /proc, to tell a reused pid apart."""
    fields = _stat_fields(pid)
    return None if fields is None else int(fields[19])


def process_running(pid: int) -> bool:
    """Whether ``pid`` is a running process: one killed that nobody has reaped yet (a zombie) still has its
    ``/proc`` entry, and is not."""
    fields = _stat_fields(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes in process group ``pgid``."""
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return []
        except PermissionError:
            return [pgid]
        return [pgid]
    members = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(entry.name)
        if fields is None:
            continue
        state, pgrp = fields[0], int(fields[2])
        if pgrp == pgid and state not in ("Z", "X"):
            members.append(int(entry.name))
    return members


def stop_process_group(
    pgid: int, timeout: float = 15.0, popen: subprocess.Popen[bytes] | None = None,
) -> bool:
    """SIGTERM the group, wait up to ``timeout``, then SIGKILL. True if anything was running.

    Pass ``popen`` for a child of this process so it is reaped (no zombie left behind).
    """
    if not group_members(pgid):
        if popen is not None:
            popen.poll()
        return False
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if popen is not None:
            popen.poll()
        if not group_members(pgid):
            break
        time.sleep(0.1)
    else:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        kill_deadline = time.monotonic() + 5
        while group_members(pgid) and time.monotonic() < kill_deadline:
            if popen is not None:
                popen.poll()
            time.sleep(0.05)
    if popen is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            popen.wait(timeout=5)
    left = group_members(pgid)
    if left:
        raise EmulatorError(f"process group {pgid} still has processes {left} after SIGKILL")
    return True


@dataclass
class ManagedProcess:
    """A background process in its own process group, with its log file.

    Usage: ``proc = spawn("name", cmd, log_path); ...; proc.stop()``
    """

    name: str
    pid: int
    log_path: Path
    url: str | None = None
    start_time: int | None = None
    cmd: list[str] = field(default_factory=list)
    popen: subprocess.Popen[bytes] | None = field(default=None, repr=False, compare=False)

    @property
    def pgid(self) -> int:
        return self.pid  # started with start_new_session=True: the leader's pid is the group id

    def members(self) -> list[int]:
        """Live processes of this group; empty if it ended or its id now belongs to someone else."""
        if self.popen is not None:
            self.popen.poll()  # reap our own child so it does not linger as a zombie
        members = group_members(self.pgid)
        # Linux does not hand out a pid that is still some group's id, so the members are ours
        # unless the whole group ended and a new session leader got the same pid: check its start time.
        if self.pgid in members and self.start_time is not None and process_start_time(self.pgid) != self.start_time:
            return []
        return members

    def alive(self) -> bool:
        """Whether the process, or anything left in its group, is still running."""
        return bool(self.members())

    def stop(self, timeout: float = 15.0) -> bool:
        """Terminate the whole process group; True if something was running."""
        if not self.members():
            return False
        return stop_process_group(self.pgid, timeout=timeout, popen=self.popen)


def spawn(name: str, cmd: list[str], log_path: Path, env: dict[str, str] | None = None,
          cwd: Path | None = None, url: str | None = None) -> ManagedProcess:
    """Start ``cmd`` in a new session (process group) with stdout+stderr appended to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        log.write(f"{START_MARKER} {time.strftime('%Y-%m-%d %H:%M:%S')}: {' '.join(cmd)}\n".encode())
        log.flush()
        try:
            popen = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=env, cwd=cwd, start_new_session=True,
            )
        except OSError as exc:
            raise EmulatorError(f"{name}: cannot run {cmd[0]}: {exc}") from exc
    return ManagedProcess(name=name, pid=popen.pid, log_path=log_path, url=url,
                          start_time=process_start_time(popen.pid), cmd=list(cmd), popen=popen)


def wait_http_ok(proc: ManagedProcess, url: str, timeout: float, expect_status: int = 200,
                 progress: float | None = None, say=None) -> float:
    """Poll ``GET url`` until it answers ``expect_status``; returns the seconds waited.

    Fails early if the process exits; the error includes the log tail. ``say(msg)`` is called
    every ``progress`` seconds with what is happening.
    """
    start = time.monotonic()
    next_note = start + (progress or float("inf"))
    last = "no answer yet"
    while True:
        waited = time.monotonic() - start
        if proc.popen is not None and proc.popen.poll() is not None:
            raise EmulatorError(
                f"{proc.name} exited with code {proc.popen.returncode} before {url} answered "
                f"(log {proc.log_path}):\n{log_excerpt(proc.log_path)}"
            )
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == expect_status:
                    return waited
                last = f"HTTP {resp.status}"
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            last = f"{getattr(exc, 'reason', exc)}"
        if waited > timeout:
            raise EmulatorError(
                f"{proc.name} did not answer {url} with {expect_status} within {timeout:.0f} s "
                f"(last: {last}; log {proc.log_path}):\n{log_excerpt(proc.log_path)}"
            )
        if say is not None and time.monotonic() >= next_note:
            tail = log_tail(proc.log_path, 1).strip()
            say(f"  ... {proc.name}: waiting {waited:.0f} s ({last}){'; log: ' + tail[:160] if tail else ''}")
            next_note += progress or float("inf")
        time.sleep(0.1 if waited < 5 else 0.5)


def _default_log(name: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=f"frame-fanout-{name}-")) / f"{name}.log"


def _check_port(name: str, host: str, port: int) -> None:
    if port_in_use(host, port):
        raise EmulatorError(f"{name}: port {host}:{port} is already in use (pass another port, or 0 for a free one)")


# ---------------------------------------------------------------- the two emulators


def start_pubsub_emulator(
    port: int | None = None, host: str = "127.0.0.1", log_path: Path | None = None,
    emulator_path: Path | None = None, startup_timeout: float = 60.0,
) -> ManagedProcess:
    """Start Google's Pub/Sub emulator (in memory) and wait until ``GET /`` answers.

    ``port`` None or 0 → a free port. Raises EmulatorNotInstalled (what to install) or EmulatorError.
    The result's ``url`` is ``http://host:port``; ``host_port(proc)`` gives ``PUBSUB_EMULATOR_HOST``.
    """
    launcher = find_pubsub_emulator(emulator_path)
    find_java()
    port = port or free_port(host)
    _check_port("pubsub emulator", host, port)
    log_path = log_path or _default_log("pubsub-emulator")
    url = f"http://{host}:{port}"
    return _spawn_until_ready("pubsub-emulator", [str(launcher), f"--host={host}", f"--port={port}"], log_path,
                              url, startup_timeout)


def start_storage_emulator(
    port: int | None = None, host: str = "127.0.0.1", default_bucket: str | None = None,
    log_path: Path | None = None, startup_timeout: float = 30.0, python: str | None = None,
) -> ManagedProcess:
    """Start ``python -m deploy.storage_emulator`` as a subprocess and wait until ``GET /`` answers.

    ``port`` None or 0 → a free port. The result's ``url`` is the ``STORAGE_EMULATOR_HOST`` value.
    """
    port = port or free_port(host)
    _check_port("storage emulator", host, port)
    log_path = log_path or _default_log("storage-emulator")
    url = f"http://{host}:{port}"
    cmd = [python or sys.executable, "-m", "deploy.storage_emulator", "--host", host, "--port", str(port)]
    if default_bucket:
        cmd += ["--default-bucket", default_bucket]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    return _spawn_until_ready("storage-emulator", cmd, log_path, url, startup_timeout, env=env)


def _spawn_until_ready(name: str, cmd: list[str], log_path: Path, url: str, startup_timeout: float,
                       env: dict[str, str] | None = None) -> ManagedProcess:
    """Spawn ``cmd`` and wait until ``GET url/`` answers; stop it again if it never does."""
    proc = spawn(name, cmd, log_path, env=env, url=url)
    try:
        wait_http_ok(proc, url + "/", startup_timeout)
    except BaseException:
        proc.stop()
        raise
    return proc


def host_port(proc: ManagedProcess) -> str:
    """``host:port`` of an emulator's URL (the ``PUBSUB_EMULATOR_HOST`` form)."""
    if not proc.url:
        raise EmulatorError(f"{proc.name} has no URL")
    return proc.url.split("://", 1)[-1]
