"""The compiled model library: opens model.so with cffi and scores dense float32 batches."""

from __future__ import annotations

from pathlib import Path

import cffi
import numpy as np
import numpy.typing as npt

ENTRY_SOURCE = Path(__file__).with_name("dense_entry.c")

_FFI = cffi.FFI()
_FFI.cdef(
    """
    int32_t reco_num_features(void);
    int32_t reco_predict_dense(const float* X, int64_t n_rows, int32_t n_cols, double* out);
    """
)
# Bound once: attribute lookups cost a measurable fraction of a one-row call.
_from_buffer = _FFI.from_buffer


class NativeLibrary:
    """A loaded model library. Calls release the GIL (cffi does so for every C call)."""

    def __init__(self, path: Path) -> None:
        """dlopens the library; raises OSError if it cannot be loaded or lacks the entry point."""
        try:
            self._lib = _FFI.dlopen(str(path))
            self._predict = self._lib.reco_predict_dense
            self.n_features = int(self._lib.reco_num_features())
        except AttributeError as exc:  # cffi reports a missing symbol as AttributeError
            raise OSError(f"{path} lacks the reco entry point: {exc}") from exc
        self.path = path

    def predict_unchecked(self, rows: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
        """Probabilities for rows that the caller has validated (2-D float32 C-contiguous, width
        n_features). The output array is the only array allocated (plus two small cffi views
        of the buffers)."""
        n_rows = rows.shape[0]
        out = np.empty(n_rows, dtype=np.float64)
        status = self._predict(
            _from_buffer("float[]", rows), n_rows, self.n_features, _from_buffer("double[]", out)
        )
        if status != 0:
            raise RuntimeError(f"reco_predict_dense refused a batch of shape {rows.shape}")
        return out
