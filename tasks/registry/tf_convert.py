"""A TensorFlow SavedModel → ONNX by tf2onnx, run as a child process of the import.

``python -m tasks.registry.tf_convert SAVED_MODEL OUT.onnx [--opset 15]
[--sample X.npy --reference Y.npy]`` converts the ``serving_default``
signature and, with a sample, writes TensorFlow's own output on it (the first
output, float64) for the parity check. It runs in its own process so
TensorFlow (seconds and about a gigabyte to import) never loads into the
caller. Needs the ``tensorflow`` extra (tensorflow-cpu, tf2onnx).
"""

from __future__ import annotations

import argparse
import os
from typing import Any


def convert(saved_model: str, out: str, opset: int = 15) -> list[str]:
    """Convert the SavedModel's serving signature; the ONNX output names, in order."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from tf2onnx import convert as tf2onnx_convert
    from tf2onnx import tf_loader

    graph_def, inputs, outputs = tf_loader.from_saved_model(
        saved_model, None, None, "serve", ["serving_default"]
    )
    tf2onnx_convert._convert_common(
        graph_def, name=saved_model, opset=opset, input_names=inputs, output_names=outputs, output_path=out
    )
    return list(outputs)


def reference(saved_model: str, sample: Any) -> Any:
    """TensorFlow's own first output of the serving signature on ``sample`` (one matrix input)."""
    import numpy as np
    import tensorflow as tf

    fn = tf.saved_model.load(saved_model).signatures["serving_default"]
    (name, spec), *_ = fn.structured_input_signature[1].items()
    result = fn(**{name: tf.constant(sample, dtype=spec.dtype)})
    first = result[sorted(result)[0]] if isinstance(result, dict) else result
    return np.asarray(first.numpy(), dtype=np.float64)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (see the module docs)."""
    parser = argparse.ArgumentParser(prog="python -m tasks.registry.tf_convert")
    parser.add_argument("saved_model")
    parser.add_argument("out")
    parser.add_argument("--opset", type=int, default=15)
    parser.add_argument("--sample")
    parser.add_argument("--reference")
    args = parser.parse_args(argv)
    convert(args.saved_model, args.out, args.opset)
    if args.sample and args.reference:
        import numpy as np

        np.save(args.reference, reference(args.saved_model, np.load(args.sample)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
