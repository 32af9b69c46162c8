"""Reading a bundle as the server does: inside the root, signed, hashed, copied privately."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from reco import (
    BundleError,
    OutsideRootError,
    SigningKey,
    copy_verified,
    resolve_under_root,
    write_manifest,
)
from tests.unit.reco.test_bundle import minimal_manifest

KEY = SigningKey(b"k" * 64, "test")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    directory = tmp_path / "root"
    bundle = directory / "b1"
    bundle.mkdir(parents=True)
    write_manifest(bundle, minimal_manifest(bundle), KEY)
    return Path(os.path.realpath(directory))


@pytest.fixture
def out(tmp_path: Path) -> Path:
    directory = tmp_path / "copy"
    directory.mkdir(mode=0o700)
    return directory


def manifest_files(bundle: Path) -> dict[str, str]:
    return dict(json.loads((bundle / "manifest.json").read_text())["files"])


def test_a_signed_bundle_is_copied_with_what_was_hashed(root: Path, out: Path) -> None:
    names = set(manifest_files(root / "b1"))
    copy = copy_verified(root, Path("b1"), KEY, out, copy={"model.txt"})
    assert copy.name == "b1" and copy.source == root / "b1" and copy.key_id == KEY.key_id
    assert {p.name for p in out.iterdir()} == {"model.txt", "manifest.json"}
    assert (out / "model.txt").read_bytes() == (root / "b1" / "model.txt").read_bytes()
    assert (out / "model.txt").stat().st_mode & 0o777 == 0o600
    assert names  # every listed file was checked, even those not copied


def test_every_listed_file_is_hashed(root: Path, out: Path) -> None:
    listed = sorted(manifest_files(root / "b1"))
    (root / "b1" / listed[-1]).write_text("changed")
    with pytest.raises(BundleError, match=f"{listed[-1]} sha256"):
        copy_verified(root, Path("b1"), KEY, out, copy=())


def test_unsigned_and_tampered_manifests_are_refused_with_a_key(root: Path, out: Path) -> None:
    manifest = root / "b1" / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"files"', '"files" ', 1))
    with pytest.raises(BundleError, match="does not match"):
        copy_verified(root, Path("b1"), KEY, out, copy=())
    (root / "b1" / "manifest.json.sig").unlink()
    with pytest.raises(BundleError, match="not signed"):
        copy_verified(root, Path("b1"), KEY, out, copy=())
    assert copy_verified(root, Path("b1"), None, out, copy=()).key_id is None  # no key: no check


def test_paths_must_resolve_inside_the_root(root: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "escape").symlink_to(outside)
    (root / "inside").symlink_to(root / "b1")
    for path in (Path("escape"), Path(".."), Path(), outside, Path("b1/../..")):
        with pytest.raises(OutsideRootError, match="outside the bundle root"):
            resolve_under_root(root, path)
    with pytest.raises(OutsideRootError, match="not a bundle directory"):
        resolve_under_root(root, Path("missing"))
    assert resolve_under_root(root, Path("inside")) == root / "b1"
    assert resolve_under_root(root, root / "b1") == root / "b1"


def test_listed_files_must_be_plain_files_named_plainly(
    root: Path, out: Path, tmp_path: Path
) -> None:
    bundle = root / "b1"
    secret = tmp_path / "secret"
    secret.write_text("x")
    name = sorted(manifest_files(bundle))[0]
    (bundle / name).unlink()
    (bundle / name).symlink_to(secret)
    with pytest.raises(BundleError, match="cannot be opened as a plain file"):
        copy_verified(root, Path("b1"), None, out, copy=())
    (bundle / name).unlink()
    os.mkfifo(bundle / name)  # would block a plain open() forever
    with pytest.raises(BundleError, match="not a regular file"):
        copy_verified(root, Path("b1"), None, out, copy=())
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["files"] = {"../secret": "0" * 64}
    write_manifest(bundle, manifest)
    with pytest.raises(BundleError, match="not a file name"):
        copy_verified(root, Path("b1"), None, out, copy=())
