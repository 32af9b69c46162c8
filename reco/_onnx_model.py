"""The ONNX backend's model: a quiet one-thread onnxruntime session (imported only when used)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt

ONNX_INPUT_NAME = "input"
ONNX_PROBABILITIES_OUTPUT = "probabilities"
PROBABILITIES_OUTPUT = ONNX_PROBABILITIES_OUTPUT
_QUIET = 3  # onnxruntime severity: errors only


class OnnxModel:
    """An onnxruntime session that asks only for the probabilities output."""

    def __init__(self, path: Path) -> None:
        """Opens the model; raises onnxruntime's errors if it is not a loadable ONNX file."""
        import onnxruntime as ort  # noqa: PLC0415 - only a process that serves ONNX loads it

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
