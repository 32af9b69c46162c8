"""The request kernel's forest: every tree's tests split into session tests and candidate tests.

All candidates of one request share the session columns, so a test on a session column has one
outcome per request. compiler/request_kernel.c evaluates the session tests once per request
(folding the session away) and, per candidate, only the candidate tests the session leaves
reachable. Rows are scored QuickScorer-style (Lucchese et al., SIGIR 2015): a tree's leaves are
numbered left to right, a test that sends a row right clears the leaves of its left subtree from
a bit mask, and the row's leaf is the lowest bit left. Any set of tests that holds every test on
the row's path gives that leaf, so the session's false tests become one mask per tree and
unreachable candidate tests are dropped.

Built from the flat generator's tables (compiler.flatgen), so the float32 thresholds and the NaN
conventions are the ones the flat library already matches LightGBM with: a test reads the copy
of a column with NaN as -inf (NaN goes left) or with NaN kept (NaN goes right), and `x <= t`
sends x left. The flat tables' padding (always-left tests) is dropped again here.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import treelite

from compiler.flatgen import (
    FlatForest,
    NotEligibleError,
    c_float,
    postprocess_expression,
    read_forest,
)
from reco import FEATURE_SETS, REQUEST_KERNEL_HEADER, SESSION_FEATURES

logger = logging.getLogger(__name__)

HEADER_FILE = "request_forest.h"
KERNEL_SOURCE = Path(__file__).with_name("request_kernel.c")
KERNEL_HEADER = REQUEST_KERNEL_HEADER  # its interface, in the runtime package
MAX_LEAVES = 32  # one uint32 leaf mask per tree and row
# A request's folded forest (16 bytes a tree, 12 a candidate test) stays on the call's stack up
# to this size; a larger one is allocated per request.
FOLD_STACK_BYTES = 64 * 1024
VECTOR_TESTS = 8  # tests the AVX2 fold evaluates at once
# The feature sets whose rows compiler/request_kernel.c builds (RK_SEQUENCE picks one).
KERNEL_FEATURE_SETS = ("candidate", "sequence")


@dataclass(frozen=True)
class SessionTest:
    """`session[column] <= threshold` sends a request left; column indexes the doubled session
    row ([0, n) NaN as -inf, [n, 2n) NaN kept). left_leaves: the leaves of its left subtree."""

    column: int
    threshold: float
    left_leaves: int


@dataclass(frozen=True)
class CandidateTest:
    """`candidate[column] <= threshold` sends a row left (column in the doubled candidate row).

    The test is reachable for a request when its session ancestors went its way: the session
    tests in `needs` (bit i = the tree's session test i) went right exactly for the bits in
    `needs_right`.
    """

    column: int
    threshold: float
    left_leaves: int
    needs: int
    needs_right: int


@dataclass(frozen=True)
class RequestTree:
    """One tree: its session tests, candidate tests and leaf values (left to right)."""

    session_tests: tuple[SessionTest, ...]
    candidate_tests: tuple[CandidateTest, ...]
    leaves: tuple[float, ...]


@dataclass(frozen=True)
class RequestForest:
    """The trees in order (the kernel sums their leaves in this order, as LightGBM does)."""

    n_session: int
    n_candidate: int
    trees: tuple[RequestTree, ...]
    base_score: float
    postprocess: str  # the C expression of `margin`, shared with the flat kernel
    feature_set: str = "candidate"  # the row the kernel builds: KERNEL_FEATURE_SETS


class _TreeSplitter:
    """Walks one padded flat tree from the root and splits its tests by column kind."""

    def __init__(self, forest: FlatForest, tree: int, n_session: int) -> None:
        self.forest, self.tree, self.n_session = forest, tree, n_session
        self.n_inner = 2**forest.depth - 1
        self.session: list[SessionTest | None] = []
        self.candidate: list[CandidateTest | None] = []
        self.leaves: list[float] = []

    def visit(self, slot: int, ancestors: tuple[tuple[int, bool], ...]) -> int:
        """Splits the subtree at breadth-first slot; returns the mask of its leaves."""
        forest, n = self.forest, self.forest.n_features
        if slot >= self.n_inner:
            if len(self.leaves) == MAX_LEAVES:
                raise NotEligibleError(f"tree {self.tree} has more than {MAX_LEAVES} leaves")
            self.leaves.append(float(forest.leaf[self.tree, slot - self.n_inner]))
            return 1 << (len(self.leaves) - 1)
        feature = int(forest.feature[self.tree, slot])
        threshold = float(forest.threshold[self.tree, slot])
        if threshold == np.inf and feature < n:  # padding, or x <= inf with NaN left: always left
            return self.visit(2 * slot + 1, ancestors)
        column, nan_kept = feature % n, feature >= n
        if column < self.n_session:
            index = len(self.session)
            self.session.append(None)  # children first, to know the left subtree's leaves
            left = self.visit(2 * slot + 1, (*ancestors, (index, False)))
            right = self.visit(2 * slot + 2, (*ancestors, (index, True)))
            doubled = column + self.n_session * nan_kept
            self.session[index] = SessionTest(doubled, threshold, left)
            return left | right
        index = len(self.candidate)
        self.candidate.append(None)
        left = self.visit(2 * slot + 1, ancestors)
        right = self.visit(2 * slot + 2, ancestors)
        n_candidate = n - self.n_session
        needs = sum(1 << i for i, _ in ancestors)
        needs_right = sum(1 << i for i, went_right in ancestors if went_right)
        doubled = column - self.n_session + n_candidate * nan_kept
        self.candidate[index] = CandidateTest(doubled, threshold, left, needs, needs_right)
        return left | right

    def split(self) -> RequestTree:
        """The tree as the request kernel stores it."""
        self.visit(0, ())
        return RequestTree(
            tuple(t for t in self.session if t is not None),
            tuple(t for t in self.candidate if t is not None),
            tuple(self.leaves),
        )


def split_forest(forest: FlatForest, n_session: int) -> RequestForest:
    """The flat forest with columns [0, n_session) as session columns and the rest as candidate
    columns; raises NotEligibleError (from compiler.flatgen) for a tree of over MAX_LEAVES
    leaves."""
    if not 0 < n_session < forest.n_features:
        raise ValueError(f"n_session must be in 1..{forest.n_features - 1}, got {n_session}")
    trees = tuple(_TreeSplitter(forest, t, n_session).split() for t in range(forest.n_trees))
    return RequestForest(
        n_session=n_session,
        n_candidate=forest.n_features - n_session,
        trees=trees,
        base_score=forest.base_score,
        postprocess=postprocess_expression(forest),
    )


def kernel_feature_set(feature_names: Sequence[str]) -> str | None:
    """The feature set (of KERNEL_FEATURE_SETS) whose names these are, in order; else None."""
    for name in KERNEL_FEATURE_SETS:
        if tuple(feature_names) == FEATURE_SETS[name]:
            return name
    return None


def feature_refusal(feature_names: Sequence[str]) -> str:
    """Why the kernel's native row builder cannot build these features ("" when it can): it
    computes reco's candidate or sequence feature set, in that order, and nothing else."""
    if kernel_feature_set(feature_names) is None:
        sizes = ", ".join(f"{name} ({len(FEATURE_SETS[name])})" for name in KERNEL_FEATURE_SETS)
        return (
            f"the native row builder computes the feature sets {sizes} in reco's order; the "
            f"model has {len(feature_names)} features starting {list(feature_names[:3])}"
        )
    return ""


def read_request_forest(model_file: Path, feature_names: Sequence[str]) -> RequestForest:
    """The request kernel's forest for a LightGBM model file; raises NotEligibleError (the flat
    generator's rules, MAX_LEAVES, or the feature set) saying why not."""
    refusal = feature_refusal(feature_names)
    if refusal:
        raise NotEligibleError(refusal)
    flat = read_forest(treelite.frontend.load_lightgbm_model(model_file))
    forest = split_forest(flat, len(SESSION_FEATURES))
    return replace(forest, feature_set=kernel_feature_set(feature_names) or "candidate")


def _array(ctype: str, name: str, values: Sequence[str]) -> str:
    return f"static const {ctype} {name}[] = {{{', '.join(values)}}};\n"


def _padded(values: list[str], filler: str) -> list[str]:
    """values plus filler up to a multiple of VECTOR_TESTS, and one more: the AVX2 fold reads
    tests VECTOR_TESTS at a time, and C has no empty arrays."""
    return values + [filler] * (VECTOR_TESTS - len(values) % VECTOR_TESTS)


def _mask(value: int) -> str:
    return f"0x{value & 0xFFFFFFFF:08x}u"


def render_header(forest: RequestForest, source: str = "") -> str:
    """request_forest.h: the constants and tables compiler/request_kernel.c includes."""
    session = [t for tree in forest.trees for t in tree.session_tests]
    candidate = [t for tree in forest.trees for t in tree.candidate_tests]
    tree_of = [i for i, tree in enumerate(forest.trees) for _ in tree.candidate_tests]
    starts: dict[str, list[int]] = {"SESSION": [0], "CANDIDATE": [0], "LEAF": [0]}
    for tree in forest.trees:
        starts["SESSION"].append(starts["SESSION"][-1] + len(tree.session_tests))
        starts["CANDIDATE"].append(starts["CANDIDATE"][-1] + len(tree.candidate_tests))
        starts["LEAF"].append(starts["LEAF"][-1] + len(tree.leaves))
    folded_bytes = 16 * len(forest.trees) + 12 * (len(candidate) + 2 * VECTOR_TESTS)
    # Padding tests: a session test whose mask clears nothing; a candidate test never reachable.
    tables = [
        ("uint32_t", "RK_SESSION_COLUMN", [str(t.column) for t in session], "0"),
        ("float", "RK_SESSION_THRESHOLD", [c_float(t.threshold) for t in session], "INFINITY"),
        ("uint32_t", "RK_SESSION_NOT_LEFT", [_mask(~t.left_leaves) for t in session], _mask(~0)),
        ("uint32_t", "RK_CANDIDATE_COLUMN", [str(t.column) for t in candidate], "0"),
        ("float", "RK_CANDIDATE_THRESHOLD", [c_float(t.threshold) for t in candidate], "0"),
        ("uint32_t", "RK_CANDIDATE_NOT_LEFT", [_mask(~t.left_leaves) for t in candidate], "0"),
        ("uint32_t", "RK_CANDIDATE_NEEDS", [_mask(t.needs) for t in candidate], "0"),
        ("uint32_t", "RK_CANDIDATE_NEEDS_RIGHT", [_mask(t.needs_right) for t in candidate], "1"),
        ("uint32_t", "RK_CANDIDATE_TREE", [str(t) for t in tree_of], "0"),
    ]
    return (
        f"/* Generated by compiler.request_forest{' from ' + source if source else ''}: "
        f"{len(forest.trees)} trees split into {len(session)} session and {len(candidate)} "
        "candidate tests. Do not edit. */\n"
        f"#define RK_N_TREES {len(forest.trees)}\n"
        f"#define RK_N_SESSION {forest.n_session}\n"
        f"#define RK_N_CANDIDATE {forest.n_candidate}\n"
        f"#define RK_SEQUENCE {int(forest.feature_set == 'sequence')}\n"
        f"#define RK_N_SESSION_TESTS {len(session)}\n"
        f"#define RK_N_CANDIDATE_TESTS {len(candidate)}\n"
        f"#define RK_FOLD_ON_STACK {int(folded_bytes <= FOLD_STACK_BYTES)}\n"
        f"#define RK_BASE_SCORE ({forest.base_score!r})\n"
        f"#define RK_POSTPROCESS(margin) {forest.postprocess}\n\n"
        "/* Tree t's tests and leaves: [RK_TREE_X[t], RK_TREE_X[t + 1]) of each table. Bit i of a\n"
        " * tree's masks is its leaf i (left to right); NOT_LEFT clears a test's left subtree;\n"
        " * NEEDS and NEEDS_RIGHT name the tree's session tests by position (bit i = test i). */\n"
        + "".join(
            _array("uint32_t", f"RK_TREE_{k}", [str(i) for i in v]) for k, v in starts.items()
        )
        + "".join(_array(ctype, name, _padded(v, fill)) for ctype, name, v, fill in tables)
        + _array("double", "RK_LEAF", [repr(v) for tree in forest.trees for v in tree.leaves])
    )


def generate_request_header(model_file: Path, out_dir: Path, feature_names: Sequence[str]) -> Path:
    """Writes request_forest.h for model_file into out_dir; raises NotEligibleError."""
    forest = read_request_forest(model_file, feature_names)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / HEADER_FILE
    path.write_text(render_header(forest, source=model_file.name))
    tests = [(len(t.session_tests), len(t.candidate_tests)) for t in forest.trees]
    logger.info(
        "generated the request kernel's forest: %d session and %d candidate tests in %d trees",
        sum(s for s, _ in tests),
        sum(c for _, c in tests),
        len(tests),
    )
    return path
