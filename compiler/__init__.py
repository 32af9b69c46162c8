"""Compiled LightGBM models: build model.so/model.onnx into a bundle, and load the best backend.

The API the server, the benchmarks and outside tools share::

    backend = compiler.load_backend(bundle_dir)          # kind="auto"|"compiled"|"onnx"|"lightgbm"
    probabilities = backend.predict(rows)                 # float32 (n, n_features) -> float64 (n,)
"""

from compiler.backends import BACKEND_KINDS, Backend, BackendError, load_backend

__all__ = ["BACKEND_KINDS", "Backend", "BackendError", "load_backend"]
