"""The ONNX fallback: onnxmltools export (probabilities only) and a quiet one-thread session."""

from __future__ import annotations

import logging
from pathlib import Path

import lightgbm as lgb
import numpy as np
import numpy.typing as npt
import onnxmltools
import onnxruntime as ort
from onnxmltools.convert.common.data_types import FloatTensorType

logger = logging.getLogger(__name__)

INPUT_NAME = "input"
PROBABILITIES_OUTPUT = "probabilities"
_QUIET = 3  # onnxruntime severity: errors only


def export_onnx(model_file: Path, n_features: int, out: Path) -> None:
    """Converts a LightGBM binary model to ONNX at out: float32 input, no ZipMap."""
    booster = lgb.Booster(model_file=str(model_file))
    onnx_model = onnxmltools.convert_lightgbm(
        booster,
        initial_types=[(INPUT_NAME, FloatTensorType([None, n_features]))],
        zipmap=False,
    )
    outputs = [output.name for output in onnx_model.graph.output]
    if PROBABILITIES_OUTPUT not in outputs:
        raise ValueError(f"converted model has outputs {outputs}, no {PROBABILITIES_OUTPUT!r}")
    out.write_bytes(onnx_model.SerializeToString())


class OnnxModel:
    """An onnxruntime session that asks only for the probabilities output."""

    def __init__(self, path: Path) -> None:
        """Opens the model; raises onnxruntime's errors if it is not a loadable ONNX file."""
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = _QUIET
        self._session = ort.InferenceSession(
            str(path), sess_options=options, providers=["CPUExecutionProvider"]
        )
        (model_input,) = self._session.get_inputs()
        self._input_name = model_input.name
        self._outputs = [PROBABILITIES_OUTPUT]
        self.n_features = int(model_input.shape[1])

    def predict(self, rows: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
        """Probability of the positive class for each row, as float64."""
        (probabilities,) = self._session.run(self._outputs, {self._input_name: rows})
        return np.asarray(probabilities[:, 1], dtype=np.float64)
