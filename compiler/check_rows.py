"""Rows for the build-time parity check: NaN injection and rows on every split's threshold."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]


def _next_up(value: np.float32) -> np.float32:
    with np.errstate(over="ignore"):  # float32 max steps up to inf, a valid input too
        return np.nextafter(value, np.float32(np.inf))


def _next_down(value: np.float32) -> np.float32:
    with np.errstate(over="ignore"):
        return np.nextafter(value, np.float32(-np.inf))


def float32_at_or_below(threshold: float) -> np.float32:
    """The largest float32 <= threshold: the input closest to a `<=` split that still goes left."""
    with np.errstate(over="ignore"):  # LightGBM's 1e300 "anything but NaN" threshold
        value = np.float32(threshold)
    if float(value) > threshold:
        value = _next_down(value)
    return value


def _categories(node: dict[str, Any]) -> list[int]:
    return [int(c) for c in str(node["threshold"]).split("||")]


def _left_and_right_values(node: dict[str, Any]) -> tuple[float, float]:
    """A value that sends a row left at this node, and one that sends it right."""
    if node["decision_type"] == "==":
        members = _categories(node)
        outside = next(c for c in range(len(members) + 1) if c not in members)
        return float(members[0]), float(outside)
    left = float32_at_or_below(float(node["threshold"]))
    return float(left), float(_next_up(left))


def _edge_values(node: dict[str, Any]) -> list[float]:
    """Values to test at a node: just below, at and just above the threshold (or in/out of the
    category set, plus -1, LightGBM's "negative means missing" code)."""
    if node["decision_type"] == "==":
        left, right = _left_and_right_values(node)
        return [left, right, -1.0]
    at = float32_at_or_below(float(node["threshold"]))
    return [float(_next_down(at)), float(at), float(_next_up(at))]


def _split_nodes(
    node: dict[str, Any], path: tuple[tuple[int, float], ...]
) -> Iterator[tuple[dict[str, Any], tuple[tuple[int, float], ...]]]:
    """Every split node with the (feature, value) assignments that lead a row to it."""
    if "split_index" not in node:
        return
    yield node, path
    feature = int(node["split_feature"])
    left, right = _left_and_right_values(node)
    yield from _split_nodes(node["left_child"], (*path, (feature, left)))
    yield from _split_nodes(node["right_child"], (*path, (feature, right)))


def threshold_rows(
    model_dump: dict[str, Any], base_rows: F32, max_rows: int, rng: np.random.Generator
) -> F32:
    """Rows that reach each split node with its feature just below, exactly at and just above the
    threshold (float32 has no value between), starting from base rows taken in turn.

    The route to a node is set through its ancestors' features; a later assignment of the same
    feature wins, so a few rows may leave the intended route, which costs only coverage.
    """
    nodes = [
        found
        for tree in model_dump["tree_info"]
        for found in _split_nodes(tree["tree_structure"], ())
    ]
    per_node = 3
    if len(nodes) * per_node > max_rows:
        keep = rng.choice(len(nodes), size=max(1, max_rows // per_node), replace=False)
        nodes = [nodes[i] for i in sorted(keep)]
    rows: list[F32] = []
    for k, (node, path) in enumerate(nodes):
        base = base_rows[k % len(base_rows)].copy()
        for feature, value in path:
            base[feature] = value
        for value in _edge_values(node):
            row = base.copy()
            row[int(node["split_feature"])] = value
            rows.append(row)
    if not rows:
        return np.empty((0, base_rows.shape[1]), dtype=np.float32)
    return np.ascontiguousarray(np.stack(rows), dtype=np.float32)


def nan_rows(base_rows: F32, rng: np.random.Generator, fraction: float = 0.2) -> F32:
    """Base rows with NaN injected: each column NaN in turn over a few rows, plus random cells."""
    n_rows, n_cols = base_rows.shape
    per_column = min(n_rows, 40)
    blocks = []
    for j in range(n_cols):
        block = base_rows[:per_column].copy()
        block[:, j] = np.nan
        blocks.append(block)
    scattered = base_rows.copy()
    scattered[rng.random(scattered.shape) < fraction] = np.nan
    blocks.append(scattered)
    return np.ascontiguousarray(np.concatenate(blocks), dtype=np.float32)


THRESHOLD_EDGES = "threshold_edges"


def parity_check_rows(
    probe_rows: F32,
    train_sample: F32 | None,
    model_dump: dict[str, Any],
    seed: int = 0,
    max_threshold_rows: int = 60_000,
) -> dict[str, F32]:
    """The rows the build checks, by group: the parity probe, the training sample (if any),
    NaN-injected rows, and rows on every split's threshold edges."""
    rng = np.random.default_rng(seed)
    groups = {"probe": probe_rows}
    if train_sample is not None:
        groups["train_sample"] = train_sample
    known = np.concatenate(list(groups.values()))
    base = known[rng.permutation(len(known))[:2000]]
    groups["nan_injected"] = nan_rows(base, rng)
    groups[THRESHOLD_EDGES] = threshold_rows(model_dump, base, max_threshold_rows, rng)
    return {name: np.ascontiguousarray(rows, dtype=np.float32) for name, rows in groups.items()}
