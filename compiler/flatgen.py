"""Branch-free C for a tree ensemble: every tree padded to a full binary tree, walked by arithmetic.

TL2cgen emits nested if/else per tree, and on fresh rows about every other branch is
mispredicted. Here each tree is a complete binary tree of depth D stored breadth-first (node k has
children 2k+1 and 2k+2), so a walk is D steps of `k = 2k + 2 - (x[f] <= t)` with no branch to
mispredict, and several rows (or, for a single row, several trees) are walked together so the
CPU overlaps their independent load chains.

The model is read from Treelite's IR, the one TL2cgen reads, so LightGBM's conventions arrive
already translated (default_left for NaN, missing_type None as NaN-goes-where-zero-goes). The C
exports the same entry points as compiler/dense_entry.c, so compiler.native loads either library.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import treelite

logger = logging.getLogger(__name__)

SOURCE_FILE = "flat_model.c"
MAX_DEPTH = 10  # a padded tree has 2^D - 1 nodes; deeper trees would mostly walk padding
MAX_FEATURES = 2048  # the kernel keeps BLOCK doubled rows on the stack
BLOCK_ROWS = (4, 8, 16)  # rows walked together: 8 measured fastest (docs/benchmarks.md)
DEFAULT_BLOCK_ROWS = 8
TREES_PER_ROW_STEP = 8  # trees walked together when scoring a single row

# Treelite 4's enums (include/treelite/enum/tree_node_type.h, operator.h).
_LEAF_NODE, _NUMERICAL_NODE = 0, 1
_OP_EQ, _OP_LT, _OP_LE, _OP_GT, _OP_GE = 1, 2, 3, 4, 5
_POSTPROCESSORS = ("sigmoid", "identity")
_TREE_FIELDS = (
    "node_type",
    "cleft",
    "cright",
    "split_index",
    "default_left",
    "threshold",
    "cmp",
    "leaf_value",
)

F32 = npt.NDArray[np.float32]
TreeFields = dict[str, npt.NDArray[np.generic]]


class NotEligibleError(Exception):
    """The model uses something the flat generator does not handle; the message says what."""


@dataclass(frozen=True)
class FlatForest:
    """Trees padded to depth `depth`, laid out as the C tables hold them.

    Node k of tree t sends a row left when row[feature[t, k]] <= threshold[t, k] (float32). The
    row is doubled: columns [0, n) hold the features with NaN read as -inf (so NaN goes left),
    columns [n, 2n) hold them with NaN kept (NaN <= t is false, so NaN goes right); feature[t, k]
    picks the copy matching the node's default direction. Padding nodes test column 0 against
    +inf, which always goes left; a leaf above the bottom is repeated under its padding.
    """

    n_features: int
    depth: int
    feature: npt.NDArray[np.uint16]  # (n_trees, 2^depth - 1)
    threshold: F32  # (n_trees, 2^depth - 1)
    leaf: npt.NDArray[np.float64]  # (n_trees, 2^depth)
    base_score: float
    postprocessor: str
    sigmoid_alpha: float

    @property
    def n_trees(self) -> int:
        """Number of trees."""
        return int(self.leaf.shape[0])


def float32_at_or_below(value: float) -> np.float32:
    """The largest float32 <= value (-inf below the float32 range). For every float32 x,
    `x <= value` (compared in double) exactly when `x <= float32_at_or_below(value)`."""
    with np.errstate(over="ignore"):
        rounded = np.float32(value)
    if float(rounded) > value:
        rounded = np.nextafter(rounded, np.float32(-np.inf))
    return rounded


def float32_below(value: float) -> np.float32:
    """The largest float32 < value. For every float32 x, `x < value` exactly when
    `x <= float32_below(value)` (value > -inf)."""
    at_or_below = float32_at_or_below(value)
    if float(at_or_below) == value:
        return np.nextafter(at_or_below, np.float32(-np.inf))
    return at_or_below


def _scalar(model: treelite.Model, name: str) -> float:
    return float(np.asarray(model.get_header_accessor().get_field(name)).ravel()[0])


def _check_header(model: treelite.Model) -> tuple[str, float, float]:
    """The postprocessor, sigmoid alpha and base score; NotEligibleError for anything but one
    output summed over trees."""
    header = model.get_header_accessor()
    num_class = np.asarray(header.get_field("num_class")).tolist()
    leaf_shape = np.asarray(header.get_field("leaf_vector_shape")).tolist()
    if _scalar(model, "num_target") != 1 or num_class != [1] or leaf_shape != [1, 1]:
        raise NotEligibleError(
            f"only single-output models: num_target {_scalar(model, 'num_target'):.0f}, "
            f"num_class {num_class}, leaf_vector_shape {leaf_shape}"
        )
    if _scalar(model, "average_tree_output"):
        raise NotEligibleError("averaged tree outputs (random forests) are not supported")
    postprocessor = str(header.get_field("postprocessor"))
    if postprocessor not in _POSTPROCESSORS:
        raise NotEligibleError(f"postprocessor {postprocessor!r} is not supported")
    return postprocessor, _scalar(model, "sigmoid_alpha"), _scalar(model, "base_scores")


def _depth(fields: TreeFields) -> int:
    """Number of tests on the longest root-to-leaf path."""
    left, right = fields["cleft"], fields["cright"]
    depth, level = 0, [0]
    while True:
        level = [int(c) for n in level if left[n] >= 0 for c in (left[n], right[n])]
        if not level:
            return depth
        depth += 1


def _read_tree(model: treelite.Model, t: int, max_depth: int) -> tuple[TreeFields, int]:
    tree = model.get_tree_accessor(t)
    fields = {name: tree.get_field(name) for name in _TREE_FIELDS}
    kinds = set(fields["node_type"].tolist()) - {_LEAF_NODE, _NUMERICAL_NODE}
    if kinds:
        raise NotEligibleError(f"tree {t} has categorical splits")
    tests = fields["node_type"] == _NUMERICAL_NODE
    if np.any(fields["cmp"][tests] == _OP_EQ):
        raise NotEligibleError(f"tree {t} has a numerical '==' test")
    if np.any(np.isnan(fields["threshold"][tests])):
        raise NotEligibleError(f"tree {t} has a NaN threshold")
    if not np.all(np.isfinite(fields["leaf_value"][~tests])):
        raise NotEligibleError(f"tree {t} has a non-finite leaf value")
    # x < -inf (or x >= -inf) holds for no (every) float32: no float32 `<=` threshold says that.
    below_everything = np.isin(fields["cmp"][tests], (_OP_LT, _OP_GE))
    if np.any(below_everything & (fields["threshold"][tests] == -np.inf)):
        raise NotEligibleError(f"tree {t} has an 'x < -inf' or 'x >= -inf' test")
    depth = _depth(fields)
    if depth > max_depth:
        raise NotEligibleError(f"tree {t} has depth {depth}, over the limit of {max_depth}")
    return fields, depth


def read_forest(model: treelite.Model, max_depth: int = MAX_DEPTH) -> FlatForest:
    """The model's trees as padded tables; raises NotEligibleError naming what is unsupported
    (categorical splits, `==` tests, trees deeper than max_depth, multi-output or averaged
    models, other postprocessors, more than MAX_FEATURES features)."""
    postprocessor, alpha, base_score = _check_header(model)
    n_features = int(model.num_feature)
    if n_features > MAX_FEATURES:
        raise NotEligibleError(f"{n_features} features, over the limit of {MAX_FEATURES}")
    trees = [_read_tree(model, t, max_depth) for t in range(model.num_tree)]
    depth = max([1, *(d for _, d in trees)])
    n_inner = 2**depth - 1
    feature = np.zeros((len(trees), n_inner), dtype=np.uint16)
    threshold = np.full((len(trees), n_inner), np.inf, dtype=np.float32)
    leaf = np.zeros((len(trees), 2**depth), dtype=np.float64)
    for t, (fields, _) in enumerate(trees):
        _place(fields, 0, 0, n_features, feature[t], threshold[t], leaf[t])
    return FlatForest(n_features, depth, feature, threshold, leaf, base_score, postprocessor, alpha)


def _place(
    fields: TreeFields,
    node: int,
    slot: int,
    n_features: int,
    feature: npt.NDArray[np.uint16],
    threshold: F32,
    leaf: npt.NDArray[np.float64],
) -> None:
    """Writes Treelite node `node` and its subtree at breadth-first position `slot`."""
    n_inner = len(threshold)
    if int(fields["node_type"][node]) == _LEAF_NODE:
        first = last = slot  # the bottom slots under this one
        while first < n_inner:
            first, last = 2 * first + 1, 2 * last + 2
        leaf[first - n_inner : last - n_inner + 1] = float(fields["leaf_value"][node])
        return
    op = int(fields["cmp"][node])
    value = float(fields["threshold"][node])
    left, right = int(fields["cleft"][node]), int(fields["cright"][node])
    default_left = bool(fields["default_left"][node])
    if op in (_OP_GT, _OP_GE):  # x > t is not(x <= t): swap the children, NaN keeps its child
        left, right, default_left = right, left, not default_left
        op = _OP_LE if op == _OP_GT else _OP_LT
    # Inputs are float32, so a double threshold becomes the float32 that splits them the same way.
    threshold[slot] = float32_at_or_below(value) if op == _OP_LE else float32_below(value)
    feature[slot] = int(fields["split_index"][node]) + (0 if default_left else n_features)
    _place(fields, left, 2 * slot + 1, n_features, feature, threshold, leaf)
    _place(fields, right, 2 * slot + 2, n_features, feature, threshold, leaf)


def c_float(value: float) -> str:
    """A float32 as a C literal that gcc reads back to exactly that float32."""
    if math.isinf(value):
        return "INFINITY" if value > 0 else "-INFINITY"
    return f"{value!r}f"  # repr round-trips the float32 exactly; gcc rounds it back to it


def _table(ctype: str, name: str, rows: npt.NDArray[np.generic], fmt: type) -> str:
    body = ",\n".join("  {" + ", ".join(map(fmt, row.tolist())) + "}" for row in rows)
    return f"static const {ctype} {name}[N_TREES_PADDED][{rows.shape[1]}] = {{\n{body}\n}};\n"


_KERNEL = r"""
/* Writes n rows of X into rows[], each twice: [0, N_FEATURES) with NaN as -inf (NaN goes left
 * at every node), [N_FEATURES, 2 N_FEATURES) with NaN kept (NaN goes right). LightGBM reads
 * |x| <= 1e-35f as 0.0 (it drops such values from its sparse row) and splits zero from non-zero
 * at +-1e-35, so these are zeroed here as in dense_entry.c. */
static inline void load_rows(const float* X, int64_t n_cols, int n, float rows[][2 * N_FEATURES]) {
  for (int r = 0; r < n; ++r) {
    for (int j = 0; j < N_FEATURES; ++j) {
      const float v = X[r * n_cols + j];
      const float kept = fabsf(v) <= 1e-35f ? 0.0f : v;
      rows[r][j] = isnan(v) ? -INFINITY : kept;
      rows[r][N_FEATURES + j] = kept;
    }
  }
}

/* One step down tree t from node k: to 2k+1 (left) or 2k+2 (right), without a branch. */
static inline unsigned step(const float* row, int t, unsigned k) {
  return 2 * k + 2 - (row[FEATURE[t][k]] <= THRESHOLD[t][k]);
}

/* Scores BLOCK rows: each tree is walked for all of them at once (BLOCK independent chains). */
static void score_block(const float* X, int64_t n_cols, double* out) {
  float rows[BLOCK][2 * N_FEATURES];
  double sum[BLOCK];
  load_rows(X, n_cols, BLOCK, rows);
  for (int r = 0; r < BLOCK; ++r) sum[r] = BASE_SCORE;
  for (int t = 0; t < N_TREES; ++t) {
    unsigned k[BLOCK] = {0};
    for (int level = 0; level < DEPTH; ++level)
      for (int r = 0; r < BLOCK; ++r) k[r] = step(rows[r], t, k[r]);
    for (int r = 0; r < BLOCK; ++r) sum[r] += LEAF[t][k[r] - N_INNER];
  }
  for (int r = 0; r < BLOCK; ++r) out[r] = POSTPROCESS(sum[r]);
}

/* Scores one row, TREE_STEP trees at once (the tables are padded with trees of leaf +0.0 up to
 * a multiple of TREE_STEP; adding +0.0 changes no sum). Trees are still summed in order. */
static void score_row(const float* x, double* out) {
  float row[1][2 * N_FEATURES];
  double sum = BASE_SCORE;
  load_rows(x, N_FEATURES, 1, row);
  for (int t = 0; t < N_TREES_PADDED; t += TREE_STEP) {
    unsigned k[TREE_STEP] = {0};
    for (int level = 0; level < DEPTH; ++level)
      for (int u = 0; u < TREE_STEP; ++u) k[u] = step(row[0], t + u, k[u]);
    for (int u = 0; u < TREE_STEP; ++u) sum += LEAF[t + u][k[u] - N_INNER];
  }
  *out = POSTPROCESS(sum);
}

/* Number of features the model expects (the row width). */
int32_t reco_num_features(void) { return N_FEATURES; }

/*
 * Scores a row-major float32 matrix X (n_rows x n_cols, NaN = missing) into out[n_rows]
 * (probabilities, float64). Returns 0, or -1 when n_cols does not match the model or n_rows < 0.
 * Thread-safe: all mutable state is on this call's stack.
 */
int32_t reco_predict_dense(const float* X, int64_t n_rows, int32_t n_cols, double* out) {
  if (n_rows < 0 || n_cols != N_FEATURES) {
    return -1;
  }
  int64_t i = 0;
  for (; i + BLOCK <= n_rows; i += BLOCK) score_block(X + i * n_cols, n_cols, out + i);
  for (; i < n_rows; ++i) score_row(X + i * n_cols, out + i);
  return 0;
}
"""


def postprocess_expression(forest: FlatForest) -> str:
    """The C expression turning `margin` into the model's output (every kernel must use this one,
    so that their results agree bit for bit)."""
    if forest.postprocessor == "sigmoid":
        return f"(1.0 / (1.0 + exp(-({forest.sigmoid_alpha!r}) * (margin))))"
    return "(margin)"


def render_c(forest: FlatForest, block_rows: int = DEFAULT_BLOCK_ROWS, source: str = "") -> str:
    """The complete C source: constants, the padded tables, the kernel and the entry points."""
    if block_rows not in BLOCK_ROWS:
        raise ValueError(f"block_rows must be one of {BLOCK_ROWS}, got {block_rows}")
    postprocess = postprocess_expression(forest)
    extra = -forest.n_trees % TREES_PER_ROW_STEP
    tables = (
        ("uint16_t", "FEATURE", np.pad(forest.feature, ((0, extra), (0, 0))), str),
        (
            "float",
            "THRESHOLD",
            np.pad(forest.threshold, ((0, extra), (0, 0)), constant_values=np.inf),
            c_float,
        ),
        ("double", "LEAF", np.pad(forest.leaf, ((0, extra), (0, 0))), repr),
    )
    header = (
        f"/* Generated by compiler.flatgen{' from ' + source if source else ''}: {forest.n_trees} "
        f"trees padded to depth {forest.depth}, branch-free. Do not edit. */\n"
        "#include <math.h>\n#include <stdint.h>\n\n"
        f"#define N_FEATURES {forest.n_features}\n"
        f"#define N_TREES {forest.n_trees}\n"
        f"#define N_TREES_PADDED {forest.n_trees + extra}\n"
        f"#define DEPTH {forest.depth}\n"
        f"#define N_INNER {2**forest.depth - 1} /* tests per padded tree; leaves follow */\n"
        f"#define BLOCK {block_rows} /* rows walked together */\n"
        f"#define TREE_STEP {TREES_PER_ROW_STEP} /* trees walked together for a single row */\n"
        f"#define BASE_SCORE ({forest.base_score!r})\n"
        f"#define POSTPROCESS(margin) {postprocess}\n\n"
        "/* Node k of tree t: go left when row[FEATURE[t][k]] <= THRESHOLD[t][k]. */\n"
    )
    return header + "".join(_table(*table) for table in tables) + _KERNEL


def generate_flat_source(
    model_file: Path, out_dir: Path, block_rows: int = DEFAULT_BLOCK_ROWS
) -> Path:
    """Writes the flat C source for model_file into out_dir; raises NotEligibleError."""
    forest = read_forest(treelite.frontend.load_lightgbm_model(model_file))
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / SOURCE_FILE
    path.write_text(render_c(forest, block_rows, source=model_file.name))
    logger.info(
        "generated branch-free C: %d trees padded to depth %d, %d rows per block",
        forest.n_trees,
        forest.depth,
        block_rows,
    )
    return path
