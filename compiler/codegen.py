"""C code generation: model.txt through Treelite's LightGBM frontend into TL2cgen sources."""

from __future__ import annotations

import contextlib
import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import tl2cgen
import treelite

logger = logging.getLogger(__name__)

ANNOTATION_FILE = "annotation.json"


@contextlib.contextmanager
def _tl2cgen_output_to_log() -> Iterator[None]:
    # TL2cgen's native log callback print()s; route those lines to our log instead of stdout.
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        yield
    for line in buffer.getvalue().splitlines():
        if line.strip():
            logger.debug("tl2cgen: %s", line.strip())


def generate_sources(
    model_file: Path,
    out_dir: Path,
    *,
    quantize: bool,
    parallel_comp: int,
    annotation_rows: npt.NDArray[np.float32] | None,
) -> list[Path]:
    """Writes header.h and the .c sources for model_file into out_dir; returns the sources.

    annotation_rows, when given, are run through the model once (TL2cgen's annotate_branch) so
    the generated code marks each branch LIKELY/UNLIKELY by how often training rows take it.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    model = treelite.frontend.load_lightgbm_model(model_file)
    params: dict[str, object] = {"quantize": int(quantize)}
    if parallel_comp > 0:
        params["parallel_comp"] = parallel_comp
    with _tl2cgen_output_to_log():
        if annotation_rows is not None:
            annotation = out_dir / ANNOTATION_FILE
            matrix = tl2cgen.DMatrix(annotation_rows, dtype="float32", missing=np.nan)
            tl2cgen.annotate_branch(model, matrix, annotation, nthread=1)
            params["annotate_in"] = str(annotation)
        tl2cgen.generate_c_code(model, out_dir, params=params)
    recipe = json.loads((out_dir / "recipe.json").read_text())
    sources = [out_dir / f"{source['name']}.c" for source in recipe["sources"]]
    logger.info(
        "generated %d C sources (%d lines) from %s",
        len(sources),
        sum(int(source["length"]) for source in recipe["sources"]),
        model_file,
    )
    return sources
