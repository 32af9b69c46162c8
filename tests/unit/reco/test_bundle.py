"""Bundle manifest I/O: atomic writes, hash checks and the parity probe round trip."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from reco import (
    CANDIDATE_SETS,
    FEATURE_SETS,
    FORMAT_VERSION,
    MANIFEST_FILE,
    BundleError,
    Manifest,
    hash_files,
    probe_from_manifest,
    probe_to_manifest,
    read_manifest,
    verify_files,
    write_manifest,
)
from reco._loader import check_feature_set


def minimal_manifest(tmp_path: Path) -> dict[str, object]:
    (tmp_path / "model.txt").write_text("tree\n")
    rows = np.array([[1.5, np.nan], [np.float32(0.1), -1.0]], dtype=np.float32)
    return {
        "format_version": FORMAT_VERSION,
        "version": "v1",
        "created_at": "2026-11-22T00:00:00Z",
        "feature_set": "candidate",
        "feature_names": ["a", "b"],
        "encodings": {},
        "default_threshold": 0.7,
        "parity_probe": probe_to_manifest(rows, [0.25, 0.75]),
        "files": hash_files(tmp_path, ["model.txt"]),
    }


def test_manifest_round_trips_and_probe_keeps_nan_and_float32_bits(tmp_path: Path) -> None:
    manifest = minimal_manifest(tmp_path)
    write_manifest(tmp_path, manifest)
    back = read_manifest(tmp_path)
    assert back == manifest
    rows, probabilities = probe_from_manifest(back)
    assert rows.dtype == np.float32
    assert np.isnan(rows[0, 1]) and rows[1, 0] == np.float32(0.1)
    assert probabilities.tolist() == [0.25, 0.75]
    assert not list(tmp_path.glob(".manifest.*"))  # no temp file left behind


def test_manifest_json_has_no_nan_literals(tmp_path: Path) -> None:
    write_manifest(tmp_path, minimal_manifest(tmp_path))
    text = (tmp_path / MANIFEST_FILE).read_text()
    assert "NaN" not in text
    json.loads(text)


def test_missing_or_incomplete_manifest_is_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match=r"no manifest\.json"):
        read_manifest(tmp_path)
    (tmp_path / MANIFEST_FILE).write_text(json.dumps({"format_version": FORMAT_VERSION}))
    with pytest.raises(BundleError, match="lacks version"):
        read_manifest(tmp_path)


def test_verify_files_names_the_tampered_file(tmp_path: Path) -> None:
    manifest = minimal_manifest(tmp_path)
    verify_files(tmp_path, manifest["files"], ["model.txt"])
    (tmp_path / "model.txt").write_text("tampered\n")
    with pytest.raises(BundleError, match=r"model.txt sha256"):
        verify_files(tmp_path, manifest["files"], ["model.txt"])
    (tmp_path / "model.txt").unlink()
    with pytest.raises(BundleError, match=r"model\.txt is missing"):
        verify_files(tmp_path, manifest["files"], ["model.txt"])


@pytest.mark.parametrize(
    ("feature_set", "names", "refusal"),
    [
        ("candidate", FEATURE_SETS["candidate"], None),
        ("sequence", FEATURE_SETS["sequence"], None),
        ("session", FEATURE_SETS["session"], "trained on feature set 'session'"),
        ("sequence", FEATURE_SETS["candidate"], "are not those of the sequence feature set"),
    ],
)
def test_a_server_takes_the_feature_sets_it_scores_with_their_names(
    tmp_path: Path, feature_set: str, names: tuple[str, ...], refusal: str | None
) -> None:
    data = minimal_manifest(tmp_path)
    rows = np.zeros((1, len(names)), dtype=np.float32)
    data.update(feature_set=feature_set, feature_names=list(names),
                parity_probe=probe_to_manifest(rows, [0.5]))  # fmt: skip
    manifest = Manifest.parse(data)
    if refusal is None:
        check_feature_set(manifest, CANDIDATE_SETS)
    else:
        with pytest.raises(BundleError, match=refusal):
            check_feature_set(manifest, CANDIDATE_SETS)
