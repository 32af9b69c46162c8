"""Simulated shoppers: sessions, the page view logged, the candidates shown and who clicks.

The click truth depends mostly on the LIVE session (the intent subcategory, the current and
previous products, engagement, price, popularity) and only weakly on a customer's long-term
favourite category, which is all a batch model knows. Device and traffic source add logit
offsets that training/calibration.py fits to the reference notebook's segment click rates.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from training.products import related_pairs

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]

DEVICES = ("Desktop", "Mobile", "Tablet")
DEVICE_SHARES = (0.38, 0.47, 0.15)
TRAFFIC_SOURCES = ("Direct", "Email", "Paid", "Organic", "Social")
TRAFFIC_SHARES = (0.14, 0.13, 0.20, 0.28, 0.25)
# Desktop shoppers read longer and scroll further; this shifts engagement, not the click offset.
DEVICE_ENGAGEMENT = (0.25, -0.15, 0.0)

# Where a session's intent comes from, and how page views follow it.
INTENT_FROM_FAVOURITE = 0.35  # otherwise any subcategory, by popularity: intent often differs
VIEW_IN_INTENT = 0.78
VIEW_IN_RELATED = 0.07  # the rest: anything popular
MAX_VIEWED = 40
MAX_CART = 10

# What the legacy recommender put in the slots: (intent, favourite category, related, popular).
SLOT_SOURCES = (0.35, 0.15, 0.10, 0.40)
MIN_SLOTS, MAX_SLOTS = 4, 5

# The click truth: logit weights (the intercept lives in the calibrated device offsets).
W_INTENT = 1.9
W_CURRENT_SUBCATEGORY = 0.6
W_PREVIOUS_SUBCATEGORY = 0.3
W_RELATED = 0.8
W_FAVOURITE = 0.25
W_ALREADY_SEEN = -1.2
W_ENGAGEMENT = 0.35
W_ENGAGEMENT_X_INTENT = 0.3
W_ENGAGED_SHOPPER = 0.3
W_PRICIER = -0.5  # per unit of log(candidate price / current price) above 1
W_POPULARITY = 0.25  # per unit of log popularity


@dataclass(frozen=True)
class GroupedSampler:
    """Draws an item within a group with probability proportional to its weight, vectorised.

    keys are group + cumulative normalised weight, so group g's items own (g, g + 1]; one
    searchsorted answers a whole array of (group, uniform) draws.
    """

    keys: F64
    items: I64

    @classmethod
    def build(cls, groups: I64, weights: F64, n_groups: int) -> GroupedSampler:
        """Sampler over items 0..len(groups)-1 grouped by `groups` (0..n_groups-1)."""
        order = np.argsort(groups, kind="stable")
        sorted_groups = groups[order]
        keys = np.empty(len(order), dtype=np.float64)
        for g in range(n_groups):
            members = sorted_groups == g
            w = np.asarray(weights, dtype=np.float64)[order][members]
            if not len(w):
                continue
            if w.sum() <= 0:  # e.g. a subcategory entirely out of stock: fall back to uniform
                w = np.ones(len(w))
            cumulative = np.cumsum(w) / w.sum()
            cumulative[-1] = 1.0
            keys[members] = g + cumulative
        return cls(keys=keys, items=order.astype(np.int64))

    def draw(self, groups: I64, uniforms: F64) -> I64:
        """One item per (group, uniform in [0, 1)) pair."""
        pos = np.searchsorted(self.keys, groups + uniforms, side="right")
        return self.items[np.minimum(pos, len(self.items) - 1)]


@dataclass(frozen=True)
class World:
    """The catalog as arrays, plus the samplers the simulation draws products with."""

    product_category: I64
    product_subcategory: I64
    prices: F64
    log_popularity: F64
    n_categories: int
    subcategory_category: I64
    related: npt.NDArray[np.bool_]  # [subcategory, subcategory]
    browse_in_subcategory: GroupedSampler  # viewed products: by popularity, stock or not
    show_in_subcategory: GroupedSampler  # shown candidates: in stock only
    subcategory_in_category: GroupedSampler
    related_of_subcategory: GroupedSampler
    category_weights: F64
    subcategory_weights: F64

    @classmethod
    def from_catalog(cls, catalog: pd.DataFrame) -> World:
        """Arrays and samplers for a catalog frame (CATALOG_COLUMNS, in product-index order)."""
        categories = sorted(catalog["category"].unique())
        subcategories = sorted(catalog["subcategory"].unique())
        product_category = catalog["category"].map(categories.index).to_numpy(np.int64)
        product_subcategory = catalog["subcategory"].map(subcategories.index).to_numpy(np.int64)
        popularity = catalog["popularity"].to_numpy(np.float64)
        in_stock = catalog["in_stock"].to_numpy(bool)
        n_sub = len(subcategories)
        subcategory_category = np.zeros(n_sub, dtype=np.int64)
        subcategory_category[product_subcategory] = product_category
        subcategory_weights = np.bincount(product_subcategory, popularity, minlength=n_sub).astype(
            np.float64
        )
        related = np.zeros((n_sub, n_sub), dtype=bool)
        for a, b in related_pairs():
            if a in subcategories and b in subcategories:
                related[subcategories.index(a), subcategories.index(b)] = True
        # A subcategory with no related one "relates" to itself, so the draw stays defined.
        related |= np.eye(n_sub, dtype=bool) & ~related.any(axis=1, keepdims=True)
        pair_from, pair_to = np.nonzero(related)
        return cls(
            product_category=product_category,
            product_subcategory=product_subcategory,
            prices=catalog["price"].to_numpy(np.float64),
            log_popularity=np.log(popularity),
            n_categories=len(categories),
            subcategory_category=subcategory_category,
            related=related,
            browse_in_subcategory=GroupedSampler.build(product_subcategory, popularity, n_sub),
            show_in_subcategory=GroupedSampler.build(
                product_subcategory, popularity * in_stock, n_sub
            ),
            subcategory_in_category=GroupedSampler.build(
                subcategory_category, subcategory_weights, len(categories)
            ),
            related_of_subcategory=_pair_sampler(pair_from, pair_to, n_sub),
            category_weights=np.bincount(
                product_category, popularity, minlength=len(categories)
            ).astype(np.float64),
            subcategory_weights=subcategory_weights,
        )

    def popular_subcategories(self, rng: np.random.Generator, size: int | tuple[int, ...]) -> I64:
        """Subcategories drawn by their total product popularity."""
        p = self.subcategory_weights / self.subcategory_weights.sum()
        return rng.choice(len(p), size=size, p=p)

    @property
    def n_products(self) -> int:
        """Number of products in the catalog."""
        return len(self.prices)


def _pair_sampler(pair_from: I64, pair_to: I64, n_sub: int) -> GroupedSampler:
    """Uniform draw of a related subcategory given a subcategory."""
    inner = GroupedSampler.build(pair_from, np.ones(len(pair_from)), n_sub)
    return GroupedSampler(keys=inner.keys, items=pair_to[inner.items])


@dataclass(frozen=True)
class Customers:
    """The customer pool: each customer's long-term favourite category; sessions cycle the pool."""

    favourite_category: I64
    session_order: I64  # session s belongs to customer session_order[s % pool]

    @classmethod
    def draw(cls, world: World, pool: int, rng: np.random.Generator) -> Customers:
        """A pool of `pool` customers with favourites drawn by category popularity."""
        weights = world.category_weights / world.category_weights.sum()
        return cls(
            favourite_category=rng.choice(world.n_categories, size=pool, p=weights),
            session_order=rng.permutation(pool).astype(np.int64),
        )

    def of_sessions(self, session_numbers: I64) -> I64:
        """Customer index of each session number."""
        return self.session_order[session_numbers % len(self.session_order)]


@dataclass(frozen=True)
class PageViews:
    """One simulated logged page view per session and its shown candidates, one row each.

    Session-level arrays have one entry per row already (expanded). `logit` is the click
    logit without the device/traffic offsets; `uniform` decides the click once offsets are known.
    """

    session_number: I64
    customer: I64
    current: I64
    previous: I64  # (rows, 3), -1 = none
    products_in_cart: I64
    device: I64
    traffic: I64
    time_on_page_sec: I64
    scroll_depth: F64
    clicked_product_image: I64
    session_length_mins: F64
    products_viewed_count: I64
    candidate: I64
    seconds_before_reference: I64
    logit: F64
    uniform: F64

    def __len__(self) -> int:
        return len(self.candidate)

    def head(self, n: int) -> PageViews:
        """The first n rows."""
        return PageViews(**{name: getattr(self, name)[:n] for name in self.__dataclass_fields__})

    def clicked(self, device_offset: F64, traffic_offset: F64) -> npt.NDArray[np.bool_]:
        """The click outcome of every row under the given segment offsets."""
        probability = _sigmoid(
            self.logit + device_offset[self.device] + traffic_offset[self.traffic]
        )
        return self.uniform < probability


def _sigmoid(x: F64) -> F64:
    return 1.0 / (1.0 + np.exp(-x))


def simulate(
    world: World, customers: Customers, session_numbers: I64, rng: np.random.Generator
) -> PageViews:
    """Simulates one logged page view for each session number (vectorised over sessions)."""
    n = len(session_numbers)
    customer = customers.of_sessions(session_numbers)
    favourite = customers.favourite_category[customer]
    device = rng.choice(len(DEVICES), size=n, p=DEVICE_SHARES)
    traffic = rng.choice(len(TRAFFIC_SOURCES), size=n, p=TRAFFIC_SHARES)
    grit = rng.standard_normal(n) + np.asarray(DEVICE_ENGAGEMENT)[device]

    # The session's intent: sometimes the long-term favourite, often something else entirely.
    any_subcategory = world.popular_subcategories(rng, n)
    in_favourite = world.subcategory_in_category.draw(favourite, rng.random(n))
    intent = np.where(rng.random(n) < INTENT_FROM_FAVOURITE, in_favourite, any_subcategory)

    # The logged page view is the `viewed`-th of the session (about 3.5 on average, more for
    # engaged shoppers); only the last four products of the path matter: current + 3 previous.
    viewed = 1 + np.minimum(rng.poisson(np.exp(0.85 + 0.35 * grit)), MAX_VIEWED - 1)
    path = np.stack([_browse(world, intent, rng) for _ in range(4)], axis=1)
    path[:, 1:][np.arange(1, 4)[None, :] >= viewed[:, None]] = -1

    # Engagement: log-normal time on page (median ~50 s), scroll depth and image clicks all
    # rise with grit; the session's minutes grow with the products viewed.
    time_on_page = np.clip(
        np.rint(np.exp(3.95 + 0.45 * grit + 0.55 * rng.standard_normal(n))), 3, 1200
    )
    scroll = np.clip(np.round(_sigmoid(0.25 + 0.9 * grit + 0.8 * rng.standard_normal(n)), 2), 0, 1)
    image = (rng.random(n) < _sigmoid(-0.7 + 0.9 * grit)).astype(np.int64)
    minutes_per_view = np.exp(0.6 + 0.3 * grit + 0.45 * rng.standard_normal(n))
    session_minutes = np.clip(np.round(viewed * minutes_per_view, 1), 0.1, 600)
    # Only viewed products can be in the cart.
    cart = np.minimum(rng.poisson(0.22 * viewed * np.exp(0.5 * grit)), np.minimum(viewed, MAX_CART))
    seconds_before = rng.integers(86_400, 91 * 86_400, size=n)  # 1 to 91 days before REFERENCE

    slots = _show_candidates(world, intent, favourite, path[:, 0], rng)
    row_session, slot = np.nonzero(slots >= 0)
    candidate = slots[row_session, slot]

    def per_row(values: Any) -> Any:  # session-level array -> one entry per shown candidate
        return values[row_session]

    page = PageViews(
        session_number=per_row(session_numbers),
        customer=per_row(customer),
        current=per_row(path[:, 0]),
        previous=path[row_session, 1:],
        products_in_cart=per_row(cart),
        device=per_row(device),
        traffic=per_row(traffic),
        time_on_page_sec=per_row(time_on_page).astype(np.int64),
        scroll_depth=per_row(scroll),
        clicked_product_image=per_row(image),
        session_length_mins=per_row(session_minutes),
        products_viewed_count=per_row(viewed),
        candidate=candidate,
        seconds_before_reference=per_row(seconds_before),
        logit=np.zeros(len(candidate)),
        uniform=rng.random(len(candidate)),
    )
    return _with_logit(page, world, per_row(intent), per_row(favourite))


def _browse(world: World, intent: I64, rng: np.random.Generator) -> I64:
    """One viewed product per session: mostly in the intent, sometimes related or anything."""
    n = len(intent)
    where = rng.random(n)
    related = world.related_of_subcategory.draw(intent, rng.random(n))
    anywhere = world.popular_subcategories(rng, n)
    subcategory = np.where(
        where < VIEW_IN_INTENT,
        intent,
        np.where(where < VIEW_IN_INTENT + VIEW_IN_RELATED, related, anywhere),
    )
    return world.browse_in_subcategory.draw(subcategory, rng.random(n))


def _show_candidates(
    world: World, intent: I64, favourite: I64, current: I64, rng: np.random.Generator
) -> I64:
    """(sessions, MAX_SLOTS) candidate products shown; -1 marks an empty slot.

    Never the product on screen, never the same product twice on one page.
    """
    n = len(intent)
    shape = (n, MAX_SLOTS)
    source = rng.choice(len(SLOT_SOURCES), size=shape, p=SLOT_SOURCES)
    intent2 = np.repeat(intent[:, None], MAX_SLOTS, axis=1)
    in_favourite = world.subcategory_in_category.draw(
        np.repeat(favourite[:, None], MAX_SLOTS, axis=1), rng.random(shape)
    )
    related = world.related_of_subcategory.draw(intent2, rng.random(shape))
    anywhere = world.popular_subcategories(rng, shape)
    subcategory = np.choose(source, [intent2, in_favourite, related, anywhere])
    slots = world.show_in_subcategory.draw(subcategory, rng.random(shape))
    # The product on screen is never recommended: show the next product id instead.
    slots = np.where(slots == current[:, None], (slots + 1) % world.n_products, slots)
    duplicate = np.zeros(shape, dtype=bool)
    for j in range(1, MAX_SLOTS):
        duplicate[:, j] = (slots[:, :j] == slots[:, j : j + 1]).any(axis=1)
    n_slots = rng.integers(MIN_SLOTS, MAX_SLOTS + 1, size=n)
    unused = np.arange(MAX_SLOTS)[None, :] >= n_slots[:, None]
    return np.where(duplicate | unused, -1, slots)


def _with_logit(page: PageViews, world: World, intent: I64, favourite: I64) -> PageViews:
    """Fills in the click logit (without segment offsets) of every row."""
    sub = world.product_subcategory
    cand_sub = sub[page.candidate]
    intent_match = (cand_sub == intent).astype(np.float64)
    current_match = cand_sub == sub[page.current]
    known_previous = page.previous >= 0
    previous_sub = np.where(known_previous, sub[page.previous], -1)
    previous_match = (previous_sub == cand_sub[:, None]).any(axis=1)
    related = world.related[intent, cand_sub] & (cand_sub != intent)
    favourite_match = world.product_category[page.candidate] == favourite
    seen = (page.previous == page.candidate[:, None]).any(axis=1)

    time = page.time_on_page_sec.astype(np.float64)
    scroll = page.scroll_depth
    quick = (time < 30) & (scroll < 0.3)
    engagement = (
        0.5 * (np.log(time) - 3.95) / 0.7
        + 0.5 * (scroll - 0.55) / 0.22
        + 0.6 * page.clicked_product_image
        + 0.35 * np.minimum(page.products_in_cart, 3)
        - 0.8 * quick
    )
    engaged_shopper = (page.session_length_mins >= 10) & (page.products_viewed_count >= 3)
    pricier = np.maximum(0.0, np.log(world.prices[page.candidate] / world.prices[page.current]))

    logit = (
        W_INTENT * intent_match
        + W_CURRENT_SUBCATEGORY * current_match
        + W_PREVIOUS_SUBCATEGORY * previous_match
        + W_RELATED * related
        + W_FAVOURITE * favourite_match
        + W_ALREADY_SEEN * seen
        + W_ENGAGEMENT * engagement
        + W_ENGAGEMENT_X_INTENT * engagement * intent_match
        + W_ENGAGED_SHOPPER * engaged_shopper
        + W_PRICIER * pricier
        + W_POPULARITY * world.log_popularity[page.candidate]
    )
    return replace(page, logit=logit)
