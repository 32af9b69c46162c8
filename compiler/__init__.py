"""The build tool: a LightGBM model -> Treelite IR -> C (flat or TL2cgen) -> model.so, plus ONNX.

What it builds is loaded and scored by the runtime, `reco` (reco.load_backend).
"""
