"""The generated product catalog: categories, subcategories of complements, prices, popularity."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pandas as pd

from reco import CATALOG_COLUMNS
from training.settings import DEFAULT_PRODUCTS, MAX_PRODUCTS

# (category, subcategory, [(item name, lowest price, highest price), ...]). Items of one
# subcategory complement each other: a shopper buying a Tent also wants a Headlamp.
ASSORTMENT: tuple[tuple[str, str, tuple[tuple[str, float, float], ...]], ...] = (
    (
        "Sports",
        "Camping",
        (
            ("Hiking Boots", 90, 180),
            ("Tent", 150, 400),
            ("Sleeping Bag", 60, 200),
            ("Headlamp", 20, 50),
            ("Sleeping Pad", 40, 120),
            ("Camp Stove", 40, 110),
            ("Trekking Poles", 35, 120),
            ("Water Filter", 25, 60),
            ("Hiking Backpack", 80, 220),
            ("Camping Lantern", 20, 45),
        ),
    ),
    (
        "Sports",
        "Cycling",
        (
            ("Road Bike", 600, 1500),
            ("Mountain Bike", 500, 1400),
            ("Helmet", 40, 150),
            ("Bike Lights", 20, 60),
            ("Bike Lock", 25, 80),
            ("Cycling Gloves", 15, 40),
            ("Bike Pump", 20, 50),
            ("Cycling Jersey", 40, 100),
        ),
    ),
    (
        "Sports",
        "Fitness",
        (
            ("Yoga Mat", 20, 60),
            ("Dumbbells", 30, 150),
            ("Resistance Bands", 12, 35),
            ("Foam Roller", 15, 40),
            ("Kettlebell", 25, 90),
            ("Jump Rope", 8, 25),
            ("Fitness Tracker", 50, 200),
        ),
    ),
    (
        "Sports",
        "Running",
        (
            ("Running Shoes", 80, 180),
            ("Running Shorts", 20, 50),
            ("GPS Running Watch", 150, 400),
            ("Hydration Vest", 50, 130),
            ("Running Socks", 10, 20),
        ),
    ),
    (
        "Electronics",
        "Computing",
        (
            ("Laptop", 600, 2000),
            ("Wireless Mouse", 20, 80),
            ("Laptop Bag", 35, 110),
            ("Mechanical Keyboard", 60, 180),
            ("Monitor", 150, 500),
            ("USB-C Hub", 25, 70),
            ("Webcam", 40, 130),
            ("Laptop Stand", 25, 70),
        ),
    ),
    (
        "Electronics",
        "Audio",
        (
            ("Noise-Cancelling Headphones", 150, 400),
            ("Bluetooth Speaker", 40, 200),
            ("Wireless Earbuds", 50, 250),
            ("Soundbar", 150, 500),
            ("Turntable", 100, 400),
        ),
    ),
    (
        "Electronics",
        "Phones",
        (
            ("Smartphone", 300, 1200),
            ("Phone Case", 15, 50),
            ("Fast Charger", 20, 50),
            ("Screen Protector", 8, 25),
            ("Power Bank", 25, 80),
        ),
    ),
    (
        "Electronics",
        "Photography",
        (
            ("Mirrorless Camera", 600, 2000),
            ("Camera Lens", 200, 900),
            ("Tripod", 30, 150),
            ("Memory Card", 15, 60),
            ("Camera Bag", 40, 120),
        ),
    ),
    (
        "Home",
        "Kitchen",
        (
            ("Coffee Maker", 50, 300),
            ("Blender", 40, 200),
            ("Knife Set", 50, 250),
            ("Cutting Board", 15, 50),
            ("Toaster", 25, 90),
            ("Cookware Set", 80, 350),
            ("Coffee Grinder", 25, 150),
        ),
    ),
    (
        "Home",
        "Bedding",
        (
            ("Duvet", 60, 250),
            ("Pillow Set", 25, 90),
            ("Bed Sheets", 35, 140),
            ("Mattress Topper", 70, 250),
            ("Weighted Blanket", 60, 200),
        ),
    ),
    (
        "Home",
        "Lighting",
        (
            ("Desk Lamp", 20, 90),
            ("Floor Lamp", 50, 200),
            ("LED Bulb Pack", 10, 35),
            ("Smart Light Strip", 25, 80),
        ),
    ),
    (
        "Home",
        "Decor",
        (
            ("Wall Art", 30, 200),
            ("Throw Pillow", 15, 50),
            ("Area Rug", 80, 400),
            ("Vase", 20, 80),
        ),
    ),
    (
        "Clothing",
        "Winter Clothing",
        (
            ("Winter Jacket", 100, 350),
            ("Wool Hat", 15, 40),
            ("Insulated Gloves", 20, 60),
            ("Scarf", 15, 50),
            ("Thermal Base Layer", 30, 90),
            ("Snow Boots", 80, 200),
        ),
    ),
    (
        "Clothing",
        "Casual Wear",
        (
            ("Jeans", 40, 120),
            ("T-Shirt", 12, 35),
            ("Hoodie", 35, 90),
            ("Sneakers", 50, 150),
            ("Baseball Cap", 15, 35),
        ),
    ),
    (
        "Clothing",
        "Accessories",
        (
            ("Leather Wallet", 25, 90),
            ("Sunglasses", 20, 180),
            ("Wristwatch", 60, 350),
            ("Belt", 20, 60),
        ),
    ),
    (
        "Beauty",
        "Skincare",
        (
            ("Moisturizer", 15, 60),
            ("Facial Cleanser", 10, 35),
            ("Vitamin C Serum", 20, 80),
            ("Sunscreen", 10, 35),
            ("Eye Cream", 20, 70),
        ),
    ),
    (
        "Beauty",
        "Haircare",
        (
            ("Shampoo", 8, 30),
            ("Conditioner", 8, 30),
            ("Hair Dryer", 40, 200),
            ("Hair Straightener", 40, 150),
        ),
    ),
    (
        "Books",
        "Fiction",
        (
            ("Mystery Novel", 10, 25),
            ("Fantasy Saga", 12, 30),
            ("Thriller", 10, 25),
            ("Science Fiction Novel", 10, 28),
        ),
    ),
    (
        "Books",
        "Cookbooks",
        (
            ("Baking Cookbook", 18, 40),
            ("Vegetarian Cookbook", 18, 40),
            ("Grilling Guide", 15, 35),
        ),
    ),
    (
        "Books",
        "Travel Guides",
        (
            ("Hiking Trail Guide", 15, 35),
            ("City Travel Guide", 12, 30),
            ("Road Trip Atlas", 15, 35),
        ),
    ),
    (
        "Toys",
        "Building Sets",
        (
            ("Building Blocks Set", 25, 120),
            ("Robot Kit", 50, 200),
            ("Marble Run", 30, 90),
        ),
    ),
    (
        "Toys",
        "Board Games",
        (
            ("Strategy Board Game", 30, 80),
            ("Party Card Game", 12, 30),
            ("Jigsaw Puzzle", 12, 35),
            ("Chess Set", 20, 90),
        ),
    ),
    (
        "Garden",
        "Gardening",
        (
            ("Garden Hose", 25, 80),
            ("Pruning Shears", 15, 50),
            ("Raised Planter", 40, 150),
            ("Seed Starter Kit", 15, 40),
            ("Garden Gloves", 10, 25),
        ),
    ),
    (
        "Garden",
        "Outdoor Living",
        (
            ("Patio Chair", 60, 200),
            ("Hammock", 40, 150),
            ("Fire Pit", 100, 350),
            ("Outdoor String Lights", 20, 60),
        ),
    ),
)

# Subcategories whose shoppers also want each other's products (a weaker complement).
RELATED_SUBCATEGORIES: tuple[tuple[str, str], ...] = (
    ("Camping", "Winter Clothing"),
    ("Camping", "Travel Guides"),
    ("Camping", "Outdoor Living"),
    ("Cycling", "Running"),
    ("Fitness", "Running"),
    ("Computing", "Phones"),
    ("Audio", "Phones"),
    ("Photography", "Travel Guides"),
    ("Kitchen", "Cookbooks"),
    ("Gardening", "Outdoor Living"),
    ("Casual Wear", "Accessories"),
    ("Skincare", "Haircare"),
    ("Bedding", "Decor"),
    ("Lighting", "Decor"),
    ("Building Sets", "Board Games"),
)

# The live-session story the server is judged on must be recommendable: always in stock.
ALWAYS_IN_STOCK = ("Hiking Boots", "Tent", "Sleeping Bag", "Headlamp", "Sleeping Pad", "Camp Stove")

# Extra models of existing items fill the catalog up to the requested size.
VARIANTS: tuple[tuple[str, float], ...] = (("Pro", 1.6), ("Lite", 0.7), ("XL", 1.25), ("Mini", 0.8))

IN_STOCK_SHARE = 0.9
ZIPF_EXPONENT = 0.9

# Above CLASSIC_CAPACITY products (every base item and each of its VARIANTS once) the catalog
# grows a long tail: branded models of the base items ("Trailhead Tent Pro 2").
BRANDS: tuple[str, ...] = (
    "Trailhead", "Summit", "Northwind", "Apex", "Kestrel", "Lumen", "Harbor", "Cedar",
    "Nimbus", "Atlas", "Ember", "Pioneer", "Tidal", "Forge", "Meridian", "Willow",
)  # fmt: skip
MODELS: tuple[tuple[str, float], ...] = (
    ("", 1.0),
    *VARIANTS,
    ("Plus", 1.15),
    ("Max", 1.4),
    ("Air", 0.9),
    ("Classic", 1.0),
)
# Each brand prices its models around the item's range: a log-normal factor of this spread.
BRAND_PRICE_SPREAD = 0.12
POPULARITY_DECIMALS = 9
_ID_DIGITS = 4  # PROD0001; wider only when the catalog needs it


def _retail_price(rng: np.random.Generator, low: float, high: float) -> float:
    """A price drawn in [low, high], ending in .99 like a shop's."""
    return max(round(float(rng.uniform(low, high))), 1) - 0.01


def _base_items() -> list[tuple[str, str, str, float, float]]:
    """(category, subcategory, name, lowest price, highest price) of every base item."""
    return [(cat, sub, name, lo, hi) for cat, sub, items in ASSORTMENT for name, lo, hi in items]


N_BASE = len(_base_items())
CLASSIC_CAPACITY = N_BASE * (1 + len(VARIANTS))


def product_ids(n_products: int) -> npt.NDArray[np.str_]:
    """PROD0001 .. for n_products, zero-padded wider only when n_products needs more digits."""
    digits = max(_ID_DIGITS, len(str(n_products)))
    numbers = np.arange(1, n_products + 1).astype(str)
    return np.char.add("PROD", np.char.zfill(numbers, digits))


def generate_catalog(seed: int, n_products: int = DEFAULT_PRODUCTS) -> pd.DataFrame:
    """The catalog (CATALOG_COLUMNS), deterministic in seed; ids PROD0001, PROD0002, ...

    Every base item appears once under its plain name. Up to CLASSIC_CAPACITY products the rest
    are variants ("Tent Pro") of randomly chosen items, exactly as the catalog has always been
    (the default catalog, its trained model and evaluation never move); above it, a long tail
    of branded models of every item (_long_tail_catalog). Popularity is Zipf-like over a random
    order, scaled so the most popular product has 1.0.
    """
    if not N_BASE <= n_products <= MAX_PRODUCTS:
        raise ValueError(
            f"n_products must be between {N_BASE} (one per base item) and {MAX_PRODUCTS:,}, "
            f"got {n_products}"
        )
    if n_products > CLASSIC_CAPACITY:
        return _long_tail_catalog(seed, n_products)
    base = _base_items()
    rng = np.random.default_rng([seed, 1])
    rows = [(cat, sub, name, _retail_price(rng, lo, hi)) for cat, sub, name, lo, hi in base]
    n_variants = n_products - len(base)
    picks = rng.choice(len(base) * len(VARIANTS), size=n_variants, replace=False)
    for pick in np.sort(picks):
        cat, sub, name, base_price = rows[pick // len(VARIANTS)]
        suffix, scale = VARIANTS[pick % len(VARIANTS)]
        price = base_price * scale
        rows.append((cat, sub, f"{name} {suffix}", _retail_price(rng, 0.95 * price, 1.05 * price)))
    # Group by subcategory so ids read naturally in the CSV (PROD0001.. are the camping gear).
    order = sorted(range(len(rows)), key=lambda i: (_subcategory_rank(rows[i][1]), i))
    rows = [rows[i] for i in order]

    rank = rng.permutation(n_products) + 1
    popularity = 1.0 / rank.astype(np.float64) ** ZIPF_EXPONENT
    names = [r[2] for r in rows]
    in_stock = (rng.random(n_products) < IN_STOCK_SHARE) | np.isin(names, ALWAYS_IN_STOCK)
    return pd.DataFrame(
        {
            "product_id": product_ids(n_products),
            "name": names,
            "category": [r[0] for r in rows],
            "subcategory": [r[1] for r in rows],
            "price": [r[3] for r in rows],
            "popularity": np.round(popularity / popularity.max(), 6),
            "in_stock": in_stock,
        },
        columns=list(CATALOG_COLUMNS),
    )


def _long_tail_catalog(seed: int, n_products: int) -> pd.DataFrame:
    """A catalog above CLASSIC_CAPACITY: the base items plus branded models of them, vectorised.

    Item i's models cycle brand, then model line, then a model number: "Trailhead Tent",
    "Summit Tent", ..., "Trailhead Tent Pro", ..., "Trailhead Tent 2", so names are unique.
    How many models an item gets is a multinomial draw over log-normal item weights. The
    popularity ranks are a random permutation (Zipf over the whole catalog), rearranged within
    each subcategory so its base items hold its best ranks: the session story (Hiking Boots,
    Tent, Sleeping Bag, ...) stays at the head, and every base item is in stock.
    """
    base = _base_items()
    rng = np.random.default_rng([seed, 1])
    base_price = np.array([_retail_price(rng, lo, hi) for _, _, _, lo, hi in base])
    item_sub = np.array([_subcategory_rank(sub) for _, sub, _, _, _ in base], dtype=np.int64)
    n_tail = n_products - N_BASE
    weights = rng.lognormal(0.0, 0.5, size=N_BASE)
    per_item = rng.multinomial(n_tail, weights / weights.sum())
    tail_item = np.repeat(np.arange(N_BASE), per_item)
    # j-th model of its item: brand j % B, model line (j // B) % M, number j // (B * M) + 1.
    j = np.arange(n_tail) - np.repeat(np.cumsum(per_item) - per_item, per_item)
    brand = j % len(BRANDS)
    model = (j // len(BRANDS)) % len(MODELS)
    number = j // (len(BRANDS) * len(MODELS)) + 1
    scale = np.array([s for _, s in MODELS])[model]
    raw_price = base_price[tail_item] * scale * rng.lognormal(0.0, BRAND_PRICE_SPREAD, size=n_tail)
    tail_price = np.maximum(np.round(raw_price), 1) - 0.01

    item_names = pd.Series([name for _, _, name, _, _ in base], dtype=object)
    model_names = pd.Series([f" {m}" if m else "" for m, _ in MODELS], dtype=object)
    numbers = pd.Series(np.where(number > 1, np.char.add(" ", number.astype(str)), ""))
    tail_names = (
        pd.Series(np.asarray(BRANDS, dtype=object)[brand])
        + " "
        + item_names.to_numpy()[tail_item]
        + model_names.to_numpy()[model]
        + numbers
    )
    item = np.concatenate([np.arange(N_BASE), tail_item])
    sub = item_sub[item]
    is_tail = np.arange(n_products) >= N_BASE
    # Subcategory by subcategory (ASSORTMENT order), base items first, then each item's models.
    order = np.lexsort((np.arange(n_products), is_tail, sub))
    names = np.concatenate([item_names.to_numpy(), tail_names.to_numpy()])[order]
    price = np.concatenate([base_price, tail_price])[order]
    item, sub, is_tail = item[order], sub[order], is_tail[order]

    rank = _ranks_with_base_at_head(rng.permutation(n_products) + 1, sub, is_tail, rng)
    popularity = 1.0 / rank.astype(np.float64) ** ZIPF_EXPONENT
    in_stock = (rng.random(n_products) < IN_STOCK_SHARE) | ~is_tail
    categories = np.array([cat for cat, _, _, _, _ in base], dtype=object)[item]
    subcategories = np.array([s for _, s, _ in ASSORTMENT], dtype=object)[sub]
    return pd.DataFrame(
        {
            "product_id": product_ids(n_products),
            "name": names,
            "category": categories,
            "subcategory": subcategories,
            "price": price,
            # Finer than the classic catalog's 6 decimals: the millionth rank is 4e-6.
            "popularity": np.round(popularity / popularity.max(), POPULARITY_DECIMALS),
            "in_stock": in_stock,
        },
        columns=list(CATALOG_COLUMNS),
    )


def _ranks_with_base_at_head(
    rank: npt.NDArray[np.int64],
    sub: npt.NDArray[np.int64],
    is_tail: npt.NDArray[np.bool_],
    rng: np.random.Generator,
) -> npt.NDArray[np.int64]:
    """The same ranks, moved within each subcategory so its base items hold its best ones.

    The catalog keeps exactly the ranks 1..n (its Zipf curve does not change); base items take
    their subcategory's best ranks in a random order, the tail the rest in its random order.
    """
    shuffle = rng.random(len(rank))
    holders = np.lexsort((shuffle, is_tail, sub))  # per subcategory: base first, random within
    best_first = np.lexsort((rank, sub))  # per subcategory: its ranks, best first
    out = np.empty_like(rank)
    out[holders] = rank[best_first]
    return out


def _subcategory_rank(subcategory: str) -> int:
    return [sub for _, sub, _ in ASSORTMENT].index(subcategory)


def related_pairs() -> list[tuple[str, str]]:
    """RELATED_SUBCATEGORIES in both directions."""
    return [*RELATED_SUBCATEGORIES, *((b, a) for a, b in RELATED_SUBCATEGORIES)]
