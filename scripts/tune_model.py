"""Tunes LightGBM parameters on generator seeds other than the default run's (never seed 7).

For each seed: generate 15,000 rows, split by session as `training train` does, build the
feature set's rows once, then train every candidate parameter set and print AUC / ceiling AUC
and the whole-catalog top-10 share of the ceiling's expected clicks (point estimates; the
default run's intervals come from `training train` / `training compare`, measured once).

    .venv/bin/python scripts/tune_model.py --seeds 11 23 31 --work-dir /tmp/tune
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
from sklearn.metrics import roc_auc_score

from reco import FEATURE_SETS, SERVING_SLOT
from training.affinity import affinity_table
from training.catalog import catalog_from_frame, tables_from_frame
from training.catalog_ranking import CatalogPages, catalog_frame, per_page_metrics
from training.dataset import load_dataset
from training.features import features_from_frame
from training.generator import generate
from training.model import MONOTONE, NUM_TREES, PARAMS
from training.pages import page_views
from training.pipeline import fit_encodings
from training.schema import LABEL, SIM_PROBABILITY
from training.settings import DEFAULT_SEED, GenerationSettings
from training.truth import Truth

# name -> (parameter overrides, trees)
CANDIDATES: dict[str, tuple[dict[str, Any], int]] = {
    "default (lr 0.1, 100 trees, depth 4)": ({}, NUM_TREES),
    "lr 0.05, 200 trees": ({"learning_rate": 0.05}, 200),
    "lr 0.05, 300 trees": ({"learning_rate": 0.05}, 300),
    "lr 0.05, 200 trees, min leaf 50": ({"learning_rate": 0.05, "min_data_in_leaf": 50}, 200),
    "lr 0.05, 200 trees, l2 10": ({"learning_rate": 0.05, "lambda_l2": 10.0}, 200),
    "lr 0.05, 300 trees, depth 3": ({"learning_rate": 0.05, "max_depth": 3, "num_leaves": 8}, 300),
    "lr 0.03, 400 trees, depth 3": ({"learning_rate": 0.03, "max_depth": 3, "num_leaves": 8}, 400),
    "lr 0.05, 200 trees, depth 5": ({"learning_rate": 0.05, "max_depth": 5, "num_leaves": 24}, 200),
    # second round, around the first round's best two
    "lr 0.05, 200 trees, l2 10, min leaf 50": (
        {"learning_rate": 0.05, "lambda_l2": 10.0, "min_data_in_leaf": 50},
        200,
    ),
    "lr 0.03, 400 trees, depth 3, l2 10": (
        {"learning_rate": 0.03, "max_depth": 3, "num_leaves": 8, "lambda_l2": 10.0},
        400,
    ),
    "lr 0.03, 300 trees, l2 10": ({"learning_rate": 0.03, "lambda_l2": 10.0}, 300),
    "lr 0.05, 200 trees, l2 30": ({"learning_rate": 0.05, "lambda_l2": 30.0}, 200),
    # third round: as cheap to serve as the default
    "lr 0.1, 100 trees, l2 30": ({"lambda_l2": 30.0}, 100),
    "lr 0.05, 200 trees, depth 3, l2 30": (
        {"learning_rate": 0.05, "max_depth": 3, "num_leaves": 8, "lambda_l2": 30.0},
        200,
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[11, 23, 31])
    parser.add_argument("--rows", type=int, default=15_000)
    parser.add_argument("--feature-set", default="sequence")
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/tune"))
    parser.add_argument("--only", nargs="*", default=None, help="candidate names to run")
    parser.add_argument("--decay", type=float, default=None, help="try another history decay")
    args = parser.parse_args()
    if args.decay is not None:
        import reco._sequence  # noqa: PLC0415 - a feature experiment, never a served setting

        reco._sequence.DECAY = args.decay
    if DEFAULT_SEED in args.seeds:
        sys.exit(f"seed {DEFAULT_SEED} is the default run's: tune on other seeds")
    from training.split import split_rows  # noqa: PLC0415 - scikit-learn

    names = FEATURE_SETS[args.feature_set]
    candidates = {k: v for k, v in CANDIDATES.items() if args.only is None or k in args.only}
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in candidates}
    for seed in args.seeds:
        out = args.work_dir / f"seed-{seed}-{args.rows}"
        if not (out / "impressions.csv").exists():
            generate(GenerationSettings(rows=args.rows, seed=seed, out_dir=out, progress=False))
        data = load_dataset(out)
        parts = split_rows(data.frame, "session")
        train = data.frame.iloc[parts.train].reset_index(drop=True)
        test = data.frame.iloc[parts.test].reset_index(drop=True)
        encodings = fit_encodings(train, args.feature_set)
        assert data.catalog is not None
        catalog = catalog_from_frame(data.catalog)
        tables = tables_from_frame(catalog, affinity_table(train))
        X_train = features_from_frame(train, encodings, catalog, tables, args.feature_set)
        X_test = features_from_frame(test, encodings, catalog, tables, args.feature_set)
        y_test = test[LABEL].to_numpy()
        ceiling_auc = roc_auc_score(y_test, test[SIM_PROBABILITY].to_numpy(np.float64))
        pages = page_views(test)
        chosen = CatalogPages.of(test, pages, catalog)
        frame = catalog_frame(test, pages, chosen, catalog, SERVING_SLOT)
        X_catalog = features_from_frame(frame, encodings, catalog, tables, args.feature_set)
        truth = Truth.of(data.frame, data.catalog, data.generation)
        assert isinstance(truth, Truth)
        relevance = truth.catalog_relevance(test, pages, chosen.page)[0]
        for name, (overrides, trees) in candidates.items():
            t0 = time.perf_counter()
            params = {
                **PARAMS,
                **overrides,
                "num_threads": 2,
                "monotone_constraints": [MONOTONE.get(n, 0) for n in names],
            }
            dataset = lgb.Dataset(X_train, label=train[LABEL].to_numpy(), feature_name=list(names))
            booster = lgb.train(params, dataset, num_boost_round=trees)
            auc = roc_auc_score(y_test, booster.predict(X_test)) / ceiling_auc
            scores = np.asarray(booster.predict(X_catalog)).reshape(len(chosen), len(catalog))
            share = float(np.nanmean(per_page_metrics(scores, chosen, relevance)["share_at_10"]))
            results[name].append((auc, share))
            print(f"seed {seed} | {name} | AUC/ceiling {auc:.4f} | top-10 share {share:.4f} "
                  f"| {time.perf_counter() - t0:.1f} s", flush=True)  # fmt: skip
    print()
    print(f"| parameters ({args.feature_set} set) | AUC / ceiling, mean of seeds "
          f"{args.seeds} | top-10 share |")  # fmt: skip
    print("|---|---:|---:|")
    for name, values in results.items():
        auc, share = np.mean(values, axis=0)
        print(f"| {name} | {auc:.4f} | {share:.4f} |")


if __name__ == "__main__":
    main()
