"""Bundle signatures: what verifies and what does not, key loading and generation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reco import (
    MIN_KEY_CHARS,
    SIGNATURE_FILE,
    BundleError,
    SignatureError,
    SigningKey,
    SigningKeyError,
    generate_key_file,
    key_file_is_private,
    load_key,
    read_manifest,
    write_manifest,
)
from tests.unit.reco.test_bundle import minimal_manifest

KEY = SigningKey(b"k" * 64, "test")
OTHER = SigningKey(b"o" * 64, "other")


def test_a_signature_verifies_only_the_exact_bytes_with_the_same_key() -> None:
    data = b'{"version": "a"}\n'
    signature = KEY.sign(data)
    KEY.verify(data, signature)
    with pytest.raises(SignatureError, match="does not match"):
        KEY.verify(data.replace(b"a", b"b"), signature)
    with pytest.raises(SignatureError, match="another key"):
        OTHER.verify(data, signature)
    with pytest.raises(SignatureError, match="not signed"):
        KEY.verify(data, None)
    with pytest.raises(SignatureError, match="not a signature record"):
        KEY.verify(data, b"garbage")
    record = json.loads(signature)
    record["algorithm"] = "none"
    with pytest.raises(SignatureError, match="HMAC-SHA256"):
        KEY.verify(data, json.dumps(record).encode())


def test_the_key_id_names_the_key_without_revealing_it() -> None:
    assert KEY.key_id != OTHER.key_id and len(KEY.key_id) == 16
    assert KEY.key_id not in KEY.secret.decode()
    assert "k" * 10 not in repr(KEY)


def test_write_manifest_signs_and_an_unsigned_rewrite_removes_the_stale_signature(
    tmp_path: Path,
) -> None:
    write_manifest(tmp_path, minimal_manifest(tmp_path), KEY)
    assert read_manifest(tmp_path, KEY)["version"]
    write_manifest(tmp_path, {**minimal_manifest(tmp_path), "version": "v2"})
    assert not (tmp_path / SIGNATURE_FILE).exists()
    with pytest.raises(BundleError, match="not signed"):
        read_manifest(tmp_path, KEY)


def test_keys_come_from_a_file_or_the_environment_never_both(tmp_path: Path) -> None:
    path = tmp_path / "key"
    path.write_text("f" * 40 + "\n")
    assert load_key(path, {}) == SigningKey(b"f" * 40, f"key file {path}")
    assert load_key(None, {"RECO_BUNDLE_KEY_FILE": str(path)}) is not None
    assert load_key(None, {"RECO_BUNDLE_KEY": "e" * 40}).source == "RECO_BUNDLE_KEY"  # type: ignore[union-attr]
    assert load_key(None, {}) is None
    with pytest.raises(SigningKeyError, match="given twice"):
        load_key(path, {"RECO_BUNDLE_KEY": "e" * 40})
    path.write_text("short")
    with pytest.raises(SigningKeyError, match=f"at least {MIN_KEY_CHARS}"):
        load_key(path, {})
    with pytest.raises(SigningKeyError, match="cannot read"):
        load_key(tmp_path / "missing", {})


def test_keygen_writes_an_owner_only_key_and_never_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "dir" / "bundle.key"
    key = generate_key_file(path)
    assert path.stat().st_mode & 0o777 == 0o600 and key_file_is_private(path)
    assert load_key(path, {}) == key and len(key.secret) == 64
    with pytest.raises(FileExistsError):
        generate_key_file(path)
    path.chmod(0o644)
    assert not key_file_is_private(path)
    path.chmod(0o640)
    assert key_file_is_private(path)  # group read is a deliberate share
