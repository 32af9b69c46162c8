"""`compiler build`'s part for the request kernel: eligibility, its C sources, its parity gate."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from compiler.flatgen import NotEligibleError
from compiler.request_forest import (
    KERNEL_HEADER,
    KERNEL_SOURCE,
    generate_request_header,
    read_request_forest,
)
from reco import (
    SESSION_FEATURES,
    GroupedCheck,
    RequestKernel,
    RequestKernelError,
    cpu_flags,
    shared_session_rows,
)

logger = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]
SHARED_SESSION_GROUP = "shared_session"  # the check rows regrouped as requests


def request_kernel_refusal(model_file: Path, feature_names: Sequence[str]) -> str:
    """Why model.so cannot carry the request kernel for this model ("" when it can)."""
    try:
        read_request_forest(model_file, feature_names)
    except NotEligibleError as exc:
        return str(exc)
    return ""


def request_kernel_sources(
    model_file: Path, source_dir: Path, feature_names: Sequence[str]
) -> list[Path]:
    """Generates request_forest.h into source_dir, beside a copy of the kernel's interface
    header; the C files to compile with them."""
    generate_request_header(model_file, source_dir, feature_names)
    shutil.copy2(KERNEL_HEADER, source_dir / KERNEL_HEADER.name)
    return [KERNEL_SOURCE]


def with_shared_sessions(groups: dict[str, F32]) -> dict[str, F32]:
    """The check groups plus all their rows regrouped in runs sharing one session's columns,
    so that every backend is also checked on rows shaped like requests (and the request
    kernel folds sessions over full and ragged blocks)."""
    rows = np.concatenate(list(groups.values()))
    return {**groups, SHARED_SESSION_GROUP: shared_session_rows(rows, len(SESSION_FEATURES))}


def check_request_kernel(check: GroupedCheck, library: Path) -> tuple[dict[str, Any] | None, str]:
    """The request kernel's parity record per block scorer this CPU can run (its fold mode
    against LightGBM, tolerance 0.0), and a message when one fails; (None, "") when the
    library has no request kernel."""
    try:
        kernel = RequestKernel.for_rows(library, check.feature_names, cpu_flags())
    except RequestKernelError as exc:
        logger.info("no request kernel to check: %s", exc)
        return None, ""
    records: dict[str, Any] = {}
    for name in kernel.usable_kernels:

        def predict(rows: F32, name: str = name) -> npt.NDArray[np.float64]:
            return kernel.predict_rows(rows, "fold", name)

        record, message = check.run("request_kernel", predict)
        records[name] = record
        if message:
            return records, f"{name} kernel: {message}"
    return records, ""
