"""The request kernel's forest: session/candidate split, QuickScorer masks, eligibility, header."""

from __future__ import annotations

import re

import numpy as np
import pytest

from compiler.flatgen import NotEligibleError, read_forest
from compiler.request_forest import (
    MAX_LEAVES,
    VECTOR_TESTS,
    RequestForest,
    feature_refusal,
    kernel_feature_set,
    render_header,
    split_forest,
)
from reco import FEATURE_NAMES, FEATURE_SETS
from tests.flat_models import EVERY_OPERATOR, Tree, build_model, edge_rows, walk_margins, zeroed

F32 = np.float32


def _doubled(values: np.ndarray) -> np.ndarray:
    kept = zeroed(values[None, :])[0]
    return np.concatenate([np.where(np.isnan(kept), -np.inf, kept), kept])


def folded_margin(forest: RequestForest, row: np.ndarray) -> float:
    """The margin the kernel computes for one row, written from the QuickScorer rules alone:
    fold the session (its false tests' masks, which candidate tests stay reachable), then AND
    in the reachable candidate tests that go right and take the lowest leaf left."""
    session = _doubled(row[: forest.n_session])
    candidate = _doubled(row[forest.n_session :])
    margin = forest.base_score
    for tree in forest.trees:
        right_bits, mask = 0, 0xFFFFFFFF
        for i, test in enumerate(tree.session_tests):
            if not session[test.column] <= test.threshold:
                right_bits |= 1 << i
                mask &= ~test.left_leaves
        for test in tree.candidate_tests:
            reachable = right_bits & test.needs == test.needs_right
            if reachable and not candidate[test.column] <= test.threshold:
                mask &= ~test.left_leaves
        lowest = (mask & -mask).bit_length() - 1
        margin += tree.leaves[lowest]
    return margin


@pytest.mark.parametrize("n_session", [1, 2])
def test_folded_forest_gives_the_flat_walk_exactly_on_every_edge(n_session: int) -> None:
    model = build_model(EVERY_OPERATOR, n_features=3)
    flat = read_forest(model)
    forest = split_forest(flat, n_session)
    rows = edge_rows(EVERY_OPERATOR, 3, np.random.default_rng(n_session))
    expected = walk_margins(flat, rows)
    actual = np.array([folded_margin(forest, row) for row in rows])
    assert np.array_equal(actual, expected)


def test_tests_are_split_by_column_and_padding_is_dropped() -> None:
    # Session column 0 at the root, candidate column 1 (NaN goes right) below its left child.
    tree: Tree = (0, "<=", 1.0, True, (1, "<=", 2.0, False, 0.5, 1.5), 2.5)
    forest = split_forest(read_forest(build_model([tree], n_features=2)), n_session=1)
    (folded,) = forest.trees
    assert folded.leaves == (0.5, 1.5, 2.5)  # the padded copy of 2.5 is gone
    (root,) = folded.session_tests
    assert (root.column, root.threshold, root.left_leaves) == (0, 1.0, 0b011)
    (below,) = folded.candidate_tests
    # Doubled candidate row of 1 column: [0] NaN as -inf, [1] NaN kept (default right).
    assert (below.column, below.threshold, below.left_leaves) == (1, 2.0, 0b001)
    assert (below.needs, below.needs_right) == (0b1, 0b0)  # reachable when the root goes left


def _chain(depth: int) -> Tree:
    """A complete tree of the given depth on candidate column 1: 2^depth leaves."""
    if depth == 0:
        return 0.25
    return (1, "<=", float(depth), True, _chain(depth - 1), _chain(depth - 1))


def test_more_than_max_leaves_is_not_eligible() -> None:
    assert MAX_LEAVES == 2**5
    split_forest(read_forest(build_model([_chain(5)], n_features=2)), n_session=1)
    with pytest.raises(NotEligibleError, match=f"more than {MAX_LEAVES} leaves"):
        split_forest(read_forest(build_model([_chain(6)], n_features=2)), n_session=1)


def test_the_candidate_and_sequence_sets_have_a_native_row_builder() -> None:
    assert feature_refusal(FEATURE_NAMES) == ""
    assert feature_refusal(FEATURE_SETS["sequence"]) == ""
    assert kernel_feature_set(FEATURE_SETS["sequence"]) == "sequence"
    assert kernel_feature_set(FEATURE_NAMES) == "candidate"
    assert kernel_feature_set(FEATURE_SETS["session"]) is None
    for other in (
        FEATURE_NAMES[:19],
        [*FEATURE_NAMES[1:], FEATURE_NAMES[0]],
        FEATURE_SETS["sequence"][:-1],
    ):
        assert "candidate (27), sequence (36)" in feature_refusal(other)


def test_header_pads_every_test_table_for_the_vector_fold() -> None:
    forest = split_forest(read_forest(build_model(EVERY_OPERATOR, n_features=3)), n_session=1)
    header = render_header(forest, source="model.txt")
    counts = {
        name: len(body.split(","))
        for name, body in re.findall(r"static const \w+ (RK_\w+)\[\] = \{([^}]*)\}", header)
    }
    n_session = sum(len(t.session_tests) for t in forest.trees)
    n_candidate = sum(len(t.candidate_tests) for t in forest.trees)
    for name, count in counts.items():
        if name.startswith("RK_SESSION_"):
            assert count % VECTOR_TESTS == 0 and count > n_session, name
        if name.startswith("RK_CANDIDATE_"):
            assert count % VECTOR_TESTS == 0 and count > n_candidate, name
    assert counts["RK_TREE_SESSION"] == len(forest.trees) + 1
    assert f"#define RK_N_CANDIDATE_TESTS {n_candidate}" in header
    # A padding candidate test can never be reachable: (bits & 0) == 1 is false.
    needs = header.split("RK_CANDIDATE_NEEDS[] = {")[1].split("}")[0].split(", ")
    right = header.split("RK_CANDIDATE_NEEDS_RIGHT[] = {")[1].split("}")[0].split(", ")
    assert needs[-1] == "0" and right[-1] == "1"


def test_the_runtime_module_imports_only_numpy_cffi_the_runtime_and_the_standard_library() -> None:
    import ast
    import sys
    from pathlib import Path

    import reco._request_kernel

    tree = ast.parse(Path(reco._request_kernel.__file__).read_text())
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {
        node.module.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module
    }
    assert imported - sys.stdlib_module_names == {"cffi", "numpy", "reco"}


def test_session_inputs_are_the_feature_builders_numeric_session_fields() -> None:
    from dataclasses import fields

    from reco import N_PREVIOUS, SESSION_INPUTS
    from training.features import N_PREVIOUS as BUILDER_PREVIOUS
    from training.features import SessionInputs

    names = [f.name for f in fields(SessionInputs)]
    assert tuple(names[: len(SESSION_INPUTS)]) == SESSION_INPUTS
    assert names[len(SESSION_INPUTS) :] == ["current_index", "previous_index"]
    assert N_PREVIOUS == BUILDER_PREVIOUS
