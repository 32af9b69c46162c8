"""The generated product catalog: categories, subcategories of complements, prices, popularity."""

from __future__ import annotations

import numpy as np
import pandas as pd

from reco import CATALOG_COLUMNS
from training.settings import DEFAULT_PRODUCTS

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


def _retail_price(rng: np.random.Generator, low: float, high: float) -> float:
    """A price drawn in [low, high], ending in .99 like a shop's."""
    return max(round(float(rng.uniform(low, high))), 1) - 0.01


def generate_catalog(seed: int, n_products: int = DEFAULT_PRODUCTS) -> pd.DataFrame:
    """The catalog (CATALOG_COLUMNS), deterministic in seed; ids PROD0001, PROD0002, ...

    Every base item appears once under its plain name; the rest of the catalog are variants
    ("Tent Pro") of randomly chosen items. Popularity is Zipf-like over a random order,
    scaled so the most popular product has 1.0.
    """
    base = [(cat, sub, name, lo, hi) for cat, sub, items in ASSORTMENT for name, lo, hi in items]
    if n_products < len(base):
        raise ValueError(f"n_products must be at least {len(base)} (one per base item)")
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
            "product_id": [f"PROD{i:04d}" for i in range(1, n_products + 1)],
            "name": names,
            "category": [r[0] for r in rows],
            "subcategory": [r[1] for r in rows],
            "price": [r[3] for r in rows],
            "popularity": np.round(popularity / popularity.max(), 6),
            "in_stock": in_stock,
        },
        columns=list(CATALOG_COLUMNS),
    )


def _subcategory_rank(subcategory: str) -> int:
    return [sub for _, sub, _ in ASSORTMENT].index(subcategory)


def related_pairs() -> list[tuple[str, str]]:
    """RELATED_SUBCATEGORIES in both directions."""
    return [*RELATED_SUBCATEGORIES, *((b, a) for a, b in RELATED_SUBCATEGORIES)]
