"""The click truth: bounded by candidates x history, equal to the dense formula it replaced."""

from __future__ import annotations

import numpy as np
import pytest

from training import behaviour
from training.behaviour import PageContext, World, already_seen, click_logit
from training.products import generate_catalog


def dense_seen(history: np.ndarray, candidates: np.ndarray, n_products: int) -> np.ndarray:
    """The former formula: a (pages, products + 1) table of what each page view saw."""
    seen_any = np.zeros((len(candidates), n_products + 1), dtype=bool)
    rows = np.repeat(np.arange(len(candidates)), history.shape[1])
    seen_any[rows, history.ravel()] = True  # -1 padding lands on the spare last column
    return np.take_along_axis(seen_any, candidates, axis=1)


def pages(world: World, n: int, width: int, rng: np.random.Generator) -> PageContext:
    """Random page views whose histories repeat products and end in -1 padding."""
    history = rng.integers(0, world.n_products, size=(n, width))
    length = rng.integers(0, width + 1, size=n)
    history[np.arange(width)[None, :] >= length[:, None]] = -1
    previous = np.where(history[:, :3] >= 0, history[:, :3], -1)
    return PageContext(
        intent=rng.integers(0, len(world.subcategories), size=n),
        favourite=rng.integers(0, world.n_categories, size=n),
        current=rng.integers(0, world.n_products, size=n),
        previous=previous,
        history=history,
        time_on_page_sec=rng.uniform(3, 600, size=n),
        scroll_depth=rng.uniform(0, 1, size=n),
        clicked_product_image=rng.integers(0, 2, size=n).astype(np.float64),
        products_in_cart=rng.integers(0, 5, size=n).astype(np.float64),
        session_length_mins=rng.uniform(0.1, 60, size=n),
        products_viewed_count=rng.integers(1, 40, size=n).astype(np.float64),
    )


@pytest.mark.parametrize("n_products", [200, 2_000])
def test_click_logit_equals_the_dense_seen_formula_on_slates_and_the_whole_catalog(
    n_products: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = World.from_catalog(generate_catalog(7, n_products))
    rng = np.random.default_rng(3)
    context = pages(world, 300, 12, rng)
    slates = rng.integers(0, world.n_products, size=(300, 5))
    slates[:, 0] = np.maximum(context.history[:, 0], 0)  # some candidates were surely seen
    everything = np.broadcast_to(np.arange(world.n_products), (300, world.n_products))
    for candidates in (slates, everything):
        expected = dense_seen(context.history, candidates, world.n_products)
        assert expected.any() and not expected.all()
        seen = already_seen(context.history, candidates)
        np.testing.assert_array_equal(seen, expected)
        # the logits are bit for bit the ones the dense formula gave
        logit = click_logit(world, context, candidates)
        monkeypatch.setattr(
            behaviour, "already_seen", lambda h, c: dense_seen(h, c, world.n_products)
        )
        np.testing.assert_array_equal(click_logit(world, context, candidates), logit)
        monkeypatch.undo()


def test_an_empty_history_sees_nothing() -> None:
    candidates = np.arange(10)[None, :].repeat(2, axis=0)
    assert not already_seen(np.full((2, 1), -1), candidates).any()
    assert not already_seen(np.zeros((2, 0), dtype=np.int64), candidates).any()
