"""Hand-built Treelite models for the flat generator's tests, and a numpy walk of its tables."""

from __future__ import annotations

from typing import TypeAlias

import numpy as np
import numpy.typing as npt
import treelite
from treelite.model_builder import Metadata, ModelBuilder, PostProcessorFunc, TreeAnnotation

from compiler.flatgen import FlatForest

# A tree is a leaf value, or (feature, op, threshold, default_left, left subtree, right subtree).
Tree: TypeAlias = float | tuple[int, str, float, bool, "Tree", "Tree"]
F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]


def build_model(
    trees: list[Tree],
    n_features: int,
    postprocessor: str = "sigmoid",
    sigmoid_alpha: float = 1.0,
    base_score: float = 0.0,
    num_class: int = 1,
) -> treelite.Model:
    """A binary classifier (or, with num_class > 1, a softmax multi-class model) of these trees."""
    builder = ModelBuilder(
        threshold_type="float64",
        leaf_output_type="float64",
        metadata=Metadata(
            num_feature=n_features,
            task_type="kBinaryClf" if num_class == 1 else "kMultiClf",
            average_tree_output=False,
            num_target=1,
            num_class=[num_class],
            leaf_vector_shape=(1, 1),
        ),
        tree_annotation=TreeAnnotation(
            num_tree=len(trees),
            target_id=[0] * len(trees),
            class_id=[t % num_class for t in range(len(trees))],
        ),
        postprocessor=PostProcessorFunc(name=postprocessor, sigmoid_alpha=float(sigmoid_alpha)),
        base_scores=[float(base_score)] * num_class,  # the builder's JSON wants floats
    )
    for tree in trees:
        builder.start_tree()
        _add_nodes(builder, tree, [0])
        builder.end_tree()
    return builder.commit()


def _add_nodes(builder: ModelBuilder, tree: Tree, next_key: list[int]) -> None:
    """Adds tree's nodes, parent before children (the builder takes the first node as root)."""
    key = next_key[0]
    next_key[0] += 1
    builder.start_node(key)
    if isinstance(tree, float):
        builder.leaf(tree)
        builder.end_node()
        return
    feature, op, threshold, default_left, left, right = tree
    left_key = next_key[0]
    right_key = left_key + _count(left)
    builder.numerical_test(feature, threshold, default_left, op, left_key, right_key)
    builder.end_node()
    _add_nodes(builder, left, next_key)
    _add_nodes(builder, right, next_key)


def _count(tree: Tree) -> int:
    return 1 if isinstance(tree, float) else 1 + _count(tree[4]) + _count(tree[5])


def zeroed(rows: F32) -> F32:
    """Rows as LightGBM reads them: |x| <= 1e-35 is 0 (NaN stays NaN)."""
    with np.errstate(invalid="ignore"):
        return np.where(np.abs(rows) <= np.float32(1e-35), np.float32(0.0), rows)


def walk_margins(forest: FlatForest, rows: F32) -> F64:
    """The margins the flat tables give, walked in numpy exactly as the C kernel walks them."""
    kept = zeroed(rows)
    doubled = np.concatenate([np.where(np.isnan(kept), -np.inf, kept), kept], axis=1)
    n_inner = 2**forest.depth - 1
    index = np.arange(len(rows))
    margin = np.full(len(rows), forest.base_score)
    for t in range(forest.n_trees):
        k = np.zeros(len(rows), dtype=np.int64)
        for _ in range(forest.depth):
            values = doubled[index, forest.feature[t, k]]
            k = 2 * k + 2 - (values <= forest.threshold[t, k]).astype(np.int64)
        margin += forest.leaf[t, k - n_inner]
    return margin


def edge_rows(trees: list[Tree], n_features: int, rng: np.random.Generator) -> F32:
    """Random rows plus, for every threshold, rows at it and one float32 step either side, and
    NaN, +-inf and 0 in every column."""
    thresholds: list[tuple[int, float]] = []

    def collect(tree: Tree) -> None:
        if not isinstance(tree, float):
            thresholds.append((tree[0], tree[2]))
            collect(tree[4])
            collect(tree[5])

    for tree in trees:
        collect(tree)
    base = rng.normal(0.0, 3.0, (40, n_features)).astype(np.float32)
    rows = [base]
    specials = [np.nan, np.inf, -np.inf, 0.0, -0.0]
    for feature, threshold in thresholds:
        with np.errstate(over="ignore"):
            at = np.float32(threshold)
        for value in (
            np.nextafter(at, np.float32(-np.inf)),
            at,
            np.nextafter(at, np.float32(np.inf)),
        ):
            block = base[:8].copy()
            block[:, feature] = value
            rows.append(block)
    for feature in range(n_features):
        for value in specials:
            block = base[:4].copy()
            block[:, feature] = value
            rows.append(block)
    return np.ascontiguousarray(np.concatenate(rows), dtype=np.float32)


# Every operator, both default directions, thresholds at +-inf, an unbalanced tree and a stump.
EVERY_OPERATOR: list[Tree] = [
    (0, "<", 0.5, True, (1, ">=", -1.25, False, 1.0, -2.0), (2, ">", 3.0, True, 0.5, 4.0)),
    (1, "<=", 0.1, False, -0.75, (0, ">", -0.3, False, (2, "<", 7.5, True, 0.25, -0.5), 1.5)),
    (2, "<=", float("inf"), False, 0.125, -8.0),
    (0, ">=", -1e300, True, 0.375, 9.0),
    (1, ">", 1e300, True, -3.0, 2.0),
    0.0625,
    (0, "<=", 0.5, True, (0, "<=", 0.25, False, (0, "<", 0.125, True, 1.0, 2.0), 3.0), 4.0),
]
