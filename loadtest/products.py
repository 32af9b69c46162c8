"""Product ids a load test draws candidates and events from: a catalog CSV or a default range."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

logger = logging.getLogger(__name__)

DEFAULT_PRODUCT_COUNT = 200
PRODUCT_ID_COLUMN = "product_id"


class CatalogError(ValueError):
    """The catalog CSV cannot provide product ids."""


def default_product_ids(count: int = DEFAULT_PRODUCT_COUNT) -> tuple[str, ...]:
    """The ids the generated catalog uses: PROD0001 .. PROD0200."""
    return tuple(f"PROD{i:04d}" for i in range(1, count + 1))


def read_product_ids(path: Path) -> tuple[str, ...]:
    """The product_id column of a catalog CSV, in file order, without duplicates or blanks."""
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            if reader.fieldnames is None or PRODUCT_ID_COLUMN not in reader.fieldnames:
                raise CatalogError(
                    f"catalog {path} has no {PRODUCT_ID_COLUMN!r} column "
                    f"(columns: {', '.join(reader.fieldnames or []) or 'none'})"
                )
            ids = [(row[PRODUCT_ID_COLUMN] or "").strip() for row in reader]
    except OSError as exc:
        raise CatalogError(f"cannot read catalog {path}: {exc}") from exc
    unique = tuple(dict.fromkeys(i for i in ids if i))
    if not unique:
        raise CatalogError(f"catalog {path} lists no product ids")
    return unique


def load_product_ids(path: Path | None, required: bool = False) -> tuple[str, ...]:
    """Product ids from `path`; the default range when it is None or absent and not required.

    required=True (the user named the file explicitly) turns a missing file into an error
    instead of a silent fallback.
    """
    if path is not None and path.is_file():
        ids = read_product_ids(path)
        logger.info("candidates from %s: %s products", path, len(ids))
        return ids
    if required:
        raise CatalogError(f"catalog {path} does not exist")
    logger.info("no catalog at %s: using ids PROD0001..PROD%04d", path, DEFAULT_PRODUCT_COUNT)
    return default_product_ids()
