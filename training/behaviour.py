"""Simulated shoppers: multi-page sessions, the slates shown on every page, position-biased clicks.

A session is a sequence of page views. Each page view shows a product (the "current" one) and a
slate of 1-5 recommended candidates in slots 0..4. The shopper's intent (a subcategory) drifts
from page to page; a clicked recommendation is the next page's product. Clicks follow a
position-based click model: P(click) = examination[slot] x sigmoid(click logit + device and
traffic offsets), where the logit depends mostly on the LIVE session (the intent, the current
and earlier products, engagement, price, popularity) and only weakly on the customer's long-term
favourite category, which is all a batch model knows. training/marginals.py fits the offsets to
the reference notebook's segment click rates.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from training.products import related_pairs

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
B = npt.NDArray[np.bool_]

# Bumped whenever the click truth or the session process changes: the evaluation re-computes the
# simulator's probabilities only for data written by the same simulator version.
SIMULATOR_VERSION = 2

DEVICES = ("Desktop", "Mobile", "Tablet")
DEVICE_SHARES = (0.38, 0.47, 0.15)
TRAFFIC_SOURCES = ("Direct", "Email", "Paid", "Organic", "Social")
TRAFFIC_SHARES = (0.14, 0.13, 0.20, 0.28, 0.25)
# Desktop shoppers read longer and scroll further; this shifts engagement, not the click offset.
DEVICE_ENGAGEMENT = (0.25, -0.15, 0.0)

# Where a session's intent comes from, how it drifts, and how page views follow it.
INTENT_FROM_FAVOURITE = 0.35  # otherwise any subcategory, by popularity: intent often differs
INTENT_DRIFT = 0.08  # per page view after the first: the intent moves on
DRIFT_TO_RELATED = 0.5  # a drifting intent moves to a related subcategory, else anywhere
# A shopper who clicks a recommendation outside the intent is often after it now.
CLICK_MOVES_INTENT = 0.8
VIEW_IN_INTENT = 0.85
VIEW_IN_RELATED = 0.07  # the rest: anything popular
LANDING_IN_INTENT = 0.92  # the first page: shoppers arrive on what they came for
MAX_VIEWED = 40
MAX_CART = 10

# Whether the shopper goes on to another page: logit of continuing after each page view.
CONTINUE_BASE = -0.2
CONTINUE_PER_GRIT = 0.45
CONTINUE_AFTER_CLICK = 0.9
# Adding the product on screen to the cart: logit per page view.
CART_BASE = -1.6
CART_PER_GRIT = 0.5

# What the legacy recommender put in the slots: (intent, favourite category, related, popular).
SLOT_SOURCES = (0.35, 0.15, 0.10, 0.40)
MIN_SLOTS, MAX_SLOTS = 4, 5
# The position-based click model: probability that a shopper looks at each slot at all.
EXAMINATION = (1.00, 0.93, 0.87, 0.82, 0.78)

# The click truth: logit weights (the intercept lives in the calibrated device offsets).
W_INTENT = 1.9
W_CURRENT_SUBCATEGORY = 0.6
W_PREVIOUS_SUBCATEGORY = 0.3
W_RELATED = 0.8
W_FAVOURITE = 0.25
W_ALREADY_SEEN = -1.2  # the candidate was on screen earlier in this session, however long ago
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
        sorted_weights = np.asarray(weights, dtype=np.float64)[order]
        bounds = np.searchsorted(sorted_groups, np.arange(n_groups + 1))
        keys = np.empty(len(order), dtype=np.float64)
        for g in range(n_groups):
            members = slice(bounds[g], bounds[g + 1])  # sorted: group g is one run
            w = sorted_weights[members]
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
    in_stock: B
    categories: tuple[str, ...]
    subcategories: tuple[str, ...]
    subcategory_category: I64
    related: B  # [subcategory, subcategory]
    browse_in_subcategory: GroupedSampler  # viewed products: by popularity, stock or not
    show_in_subcategory: GroupedSampler  # shown candidates: in stock only
    subcategory_in_category: GroupedSampler
    related_of_subcategory: GroupedSampler
    category_weights: F64
    subcategory_weights: F64

    @classmethod
    def from_catalog(cls, catalog: pd.DataFrame) -> World:
        """Arrays and samplers for a catalog frame (CATALOG_COLUMNS, in product-index order)."""
        categories = sorted(catalog["category"].astype(str).unique())
        subcategories = sorted(catalog["subcategory"].astype(str).unique())
        product_category = pd.Index(categories).get_indexer(catalog["category"].astype(str))
        product_subcategory = pd.Index(subcategories).get_indexer(
            catalog["subcategory"].astype(str)
        )
        product_category = product_category.astype(np.int64)
        product_subcategory = product_subcategory.astype(np.int64)
        popularity = catalog["popularity"].to_numpy(np.float64)
        in_stock = catalog["in_stock"].astype(bool).to_numpy()
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
            in_stock=in_stock,
            categories=tuple(categories),
            subcategories=tuple(subcategories),
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

    @property
    def n_categories(self) -> int:
        """Number of categories."""
        return len(self.categories)


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
class PageContext:
    """What the click truth reads about one page view (one entry per page view).

    history holds every product viewed earlier in the session (-1 = padding); previous is its
    last three, most recent first (-1 = none).
    """

    intent: I64
    favourite: I64
    current: I64
    previous: I64  # (n, 3)
    history: I64  # (n, h)
    time_on_page_sec: F64
    scroll_depth: F64
    clicked_product_image: F64
    products_in_cart: F64
    session_length_mins: F64
    products_viewed_count: F64

    def take(self, rows: Any) -> PageContext:
        """The contexts of the given page views."""
        fields = self.__dataclass_fields__
        return PageContext(**{name: getattr(self, name)[rows] for name in fields})


def click_logit(world: World, page: PageContext, candidates: I64) -> F64:
    """The click logit (without segment offsets) of candidates (n, k) on n page views.

    The simulator calls it with each page's slate; the evaluation calls it with the whole
    catalog to know what the simulator's ideal ranking would have been.
    """
    sub = world.product_subcategory
    cand_sub = sub[candidates]
    intent = page.intent[:, None]
    intent_match = (cand_sub == intent).astype(np.float64)
    current_match = cand_sub == sub[page.current][:, None]
    previous_sub = np.where(page.previous >= 0, sub[page.previous], -1)
    previous_match = (previous_sub[:, :, None] == cand_sub[:, None, :]).any(axis=1)
    related = world.related[intent, cand_sub] & (cand_sub != intent)
    favourite_match = world.product_category[candidates] == page.favourite[:, None]
    seen = already_seen(page.history, candidates)

    time = page.time_on_page_sec
    scroll = page.scroll_depth
    quick = (time < 30) & (scroll < 0.3)
    engagement = (
        0.5 * (np.log(time) - 3.95) / 0.7
        + 0.5 * (scroll - 0.55) / 0.22
        + 0.6 * page.clicked_product_image
        + 0.35 * np.minimum(page.products_in_cart, 3)
        - 0.8 * quick
    )[:, None]
    engaged_shopper = (page.session_length_mins >= 10) & (page.products_viewed_count >= 3)
    price_ratio = world.prices[candidates] / world.prices[page.current][:, None]
    pricier = np.maximum(0.0, np.log(price_ratio))
    return (
        W_INTENT * intent_match
        + W_CURRENT_SUBCATEGORY * current_match
        + W_PREVIOUS_SUBCATEGORY * previous_match
        + W_RELATED * related
        + W_FAVOURITE * favourite_match
        + W_ALREADY_SEEN * seen
        + W_ENGAGEMENT * engagement
        + W_ENGAGEMENT_X_INTENT * engagement * intent_match
        + W_ENGAGED_SHOPPER * engaged_shopper[:, None]
        + W_PRICIER * pricier
        + W_POPULARITY * world.log_popularity[candidates]
    )


def already_seen(history: I64, candidates: I64) -> B:
    """(n, k): whether each candidate is among its page view's history (n, h; -1 = padding).

    Bounded by candidates x history, never by the catalog: a whole-catalog row (k = products)
    is compared a history column at a time.
    """
    seen = np.zeros(candidates.shape, dtype=bool)
    for column in history.T:
        seen |= (candidates == column[:, None]) & (column[:, None] >= 0)
    return seen


def sigmoid(x: Any) -> Any:
    """The logistic function."""
    return 1.0 / (1.0 + np.exp(-x))


def click_probability(
    logit: F64, slot: I64, device: I64, traffic: I64, device_offset: F64, traffic_offset: F64
) -> F64:
    """P(click) under the position-based model: examination[slot] x sigmoid(logit + offsets)."""
    examined = np.asarray(EXAMINATION)[slot]
    return examined * sigmoid(logit + device_offset[device] + traffic_offset[traffic])


@dataclass(frozen=True)
class Impressions:
    """Simulated shown candidates, one entry per row, in (session, page, slot) order."""

    session_number: I64
    customer: I64
    page: I64  # 0-based page view of the session
    slot: I64
    current: I64
    previous: I64  # (rows, 3), -1 = none
    products_in_cart: I64
    device: I64
    traffic: I64
    time_on_page_sec: I64
    scroll_depth: F64
    clicked_product_image: I64
    session_length_mins: F64
    elapsed_seconds: I64  # from the session's start to this page view
    products_viewed_count: I64
    candidate: I64
    seconds_before_reference: I64  # when the session started
    intent: I64
    favourite: I64
    logit: F64
    probability: F64
    clicked: B

    def __len__(self) -> int:
        return len(self.candidate)

    def take(self, rows: Any) -> Impressions:
        """The given rows (a slice, mask or index array)."""
        fields = self.__dataclass_fields__
        return Impressions(**{name: getattr(self, name)[rows] for name in fields})


def simulate(
    world: World,
    customers: Customers,
    session_numbers: I64,
    rng: np.random.Generator,
    device_offset: F64,
    traffic_offset: F64,
) -> Impressions:
    """Simulates whole sessions, page view by page view (vectorised over the sessions).

    The offsets decide the clicks, and clicks decide what comes next (the clicked product is the
    next page; a click makes another page more likely), so they are an input here.
    """
    n = len(session_numbers)
    customer = customers.of_sessions(session_numbers)
    favourite = customers.favourite_category[customer]
    device = rng.choice(len(DEVICES), size=n, p=DEVICE_SHARES)
    traffic = rng.choice(len(TRAFFIC_SOURCES), size=n, p=TRAFFIC_SHARES)
    grit = rng.standard_normal(n) + np.asarray(DEVICE_ENGAGEMENT)[device]
    seconds_before = rng.integers(86_400, 91 * 86_400, size=n)  # 1 to 91 days before REFERENCE
    intent = _fresh_intent(world, favourite, rng)

    history = np.full((n, MAX_VIEWED), -1, dtype=np.int64)  # products viewed, in order
    cart = np.zeros(n, dtype=np.int64)
    elapsed = np.zeros(n, dtype=np.int64)
    followed = np.full(n, -1, dtype=np.int64)  # product clicked on the previous page, if any
    active = np.arange(n)
    parts: list[dict[str, Any]] = []
    for page in range(MAX_VIEWED):
        if not len(active):
            break
        m = len(active)
        if page > 0:
            intent[active] = _drift(world, intent[active], favourite[active], rng)
            # A click outside the intent moves the intent to the clicked product's subcategory.
            clicked_sub = world.product_subcategory[np.maximum(followed[active], 0)]
            moves = (followed[active] >= 0) & (rng.random(m) < CLICK_MOVES_INTENT)
            intent[active] = np.where(moves, clicked_sub, intent[active])
        in_intent = LANDING_IN_INTENT if page == 0 else VIEW_IN_INTENT
        browsed = _browse(world, intent[active], rng, in_intent)
        current = np.where(followed[active] >= 0, followed[active], browsed)
        g = grit[active]
        # Engagement on this page: log-normal time on page (median ~50 s), scroll depth and
        # image clicks all rise with grit; each page adds its minutes to the session's.
        time_on_page = np.clip(
            np.rint(np.exp(3.95 + 0.45 * g + 0.55 * rng.standard_normal(m))), 3, 1200
        )
        scroll = np.clip(np.round(sigmoid(0.25 + 0.9 * g + 0.8 * rng.standard_normal(m)), 2), 0, 1)
        image = (rng.random(m) < sigmoid(-0.7 + 0.9 * g)).astype(np.int64)
        page_seconds = np.rint(60 * np.exp(0.6 + 0.3 * g + 0.45 * rng.standard_normal(m)))
        elapsed[active] += np.maximum(page_seconds, 6).astype(np.int64)
        add = (rng.random(m) < sigmoid(CART_BASE + CART_PER_GRIT * g)) & (cart[active] < MAX_CART)
        cart[active] += add
        previous = history[active, :page][:, ::-1][:, :3]
        previous = np.pad(previous, ((0, 0), (0, 3 - previous.shape[1])), constant_values=-1)
        minutes = np.clip(np.round(elapsed[active] / 60.0, 1), 0.1, 600)
        context = PageContext(
            intent=intent[active],
            favourite=favourite[active],
            current=current,
            previous=previous,
            history=history[active, :page] if page else np.full((m, 1), -1, dtype=np.int64),
            time_on_page_sec=time_on_page,
            scroll_depth=scroll,
            clicked_product_image=image.astype(np.float64),
            products_in_cart=cart[active].astype(np.float64),
            session_length_mins=minutes,
            products_viewed_count=np.full(m, page + 1, dtype=np.float64),
        )
        slate = show_candidates(world, intent[active], favourite[active], current, rng)
        shown = slate >= 0
        logit = click_logit(world, context, np.where(shown, slate, 0))
        slots = np.broadcast_to(np.arange(MAX_SLOTS), slate.shape)
        probability = click_probability(
            logit,
            slots,
            device[active][:, None],
            traffic[active][:, None],
            device_offset,
            traffic_offset,
        )
        clicked = (rng.random(slate.shape) < probability) & shown
        row, slot = np.nonzero(shown)
        session = active[row]
        parts.append(
            {
                "session": session,
                "page": np.full(len(row), page, dtype=np.int64),
                "slot": slot.astype(np.int64),
                "current": current[row],
                "previous": previous[row],
                "products_in_cart": cart[session].copy(),
                "time_on_page_sec": time_on_page[row].astype(np.int64),
                "scroll_depth": scroll[row],
                "clicked_product_image": image[row],
                "session_length_mins": minutes[row],
                "elapsed_seconds": elapsed[session].copy(),
                "candidate": slate[row, slot],
                "intent": intent[session].copy(),
                "logit": logit[row, slot],
                "probability": probability[row, slot],
                "clicked": clicked[row, slot],
            }
        )
        history[active, page] = current
        # The first clicked slot is where the shopper goes next.
        any_click = clicked.any(axis=1)
        first = np.argmax(clicked, axis=1)
        followed[active] = np.where(any_click, slate[np.arange(m), first], -1)
        go_on = rng.random(m) < sigmoid(
            CONTINUE_BASE + CONTINUE_PER_GRIT * g + CONTINUE_AFTER_CLICK * any_click
        )
        active = active[go_on]

    merged = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
    order = np.lexsort((merged["slot"], merged["page"], merged["session"]))
    rows = {key: values[order] for key, values in merged.items()}
    s = rows.pop("session")
    return Impressions(
        session_number=session_numbers[s],
        customer=customer[s],
        device=device[s],
        traffic=traffic[s],
        seconds_before_reference=seconds_before[s],
        favourite=favourite[s],
        products_viewed_count=rows["page"] + 1,
        **rows,
    )


def _fresh_intent(world: World, favourite: I64, rng: np.random.Generator) -> I64:
    """A new intent: sometimes in the long-term favourite category, often anything popular."""
    n = len(favourite)
    any_subcategory = world.popular_subcategories(rng, n)
    in_favourite = world.subcategory_in_category.draw(favourite, rng.random(n))
    return np.where(rng.random(n) < INTENT_FROM_FAVOURITE, in_favourite, any_subcategory)


def _drift(world: World, intent: I64, favourite: I64, rng: np.random.Generator) -> I64:
    """The intent on the next page: mostly unchanged, else a related or a fresh subcategory."""
    n = len(intent)
    moves = rng.random(n) < INTENT_DRIFT
    related = world.related_of_subcategory.draw(intent, rng.random(n))
    fresh = _fresh_intent(world, favourite, rng)
    moved = np.where(rng.random(n) < DRIFT_TO_RELATED, related, fresh)
    return np.where(moves, moved, intent)


def _browse(world: World, intent: I64, rng: np.random.Generator, in_intent: float) -> I64:
    """One viewed product per session: mostly in the intent, sometimes related or anything."""
    n = len(intent)
    where = rng.random(n)
    related = world.related_of_subcategory.draw(intent, rng.random(n))
    anywhere = world.popular_subcategories(rng, n)
    subcategory = np.where(
        where < in_intent,
        intent,
        np.where(where < in_intent + VIEW_IN_RELATED, related, anywhere),
    )
    return world.browse_in_subcategory.draw(subcategory, rng.random(n))


def show_candidates(
    world: World, intent: I64, favourite: I64, current: I64, rng: np.random.Generator
) -> I64:
    """(pages, MAX_SLOTS) candidate products shown; -1 marks an empty slot.

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
    slate = np.where(duplicate | unused, -1, slots)
    # What is left is shown in consecutive slots from the first: examination goes by position.
    packed = np.argsort(slate < 0, axis=1, kind="stable")
    return np.take_along_axis(slate, packed, axis=1)
