"""``gpunn export MODEL --onnx OUT.onnx``: a saved model as an ONNX graph (the graph is
described at :mod:`gpunn.files.onnx_export`)."""

from __future__ import annotations

import argparse
import warnings

from .atomic import check_outputs
from .backend import NumpyBackend
from .files import onnx_export


def _opset(text):
    """``--opset``, checked as the flag is read (the error names the flag): from
    ``MIN_OPSET`` to the newest the installed onnx knows (without onnx, the export itself
    then says how to install it)."""
    try:
        newest = onnx_export.require().defs.onnx_opset_version()
    except ImportError:
        newest = None
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < onnx_export.MIN_OPSET or (newest and value > newest):
        raise argparse.ArgumentTypeError(
            f"expected an integer from {onnx_export.MIN_OPSET}"
            + (f" to {newest}" if newest else " on") + f", got {text!r}")
    return value


def build_parser(parser) -> None:
    """Add the ``export`` arguments to its (sub)parser."""
    parser.add_argument("model", help="a model file (.npz or .safetensors) written by gpunn "
                        "train --save or model.save")
    parser.add_argument("--onnx", required=True, metavar="OUT.onnx",
                        help="write the model here as an ONNX graph (float32, symbolic "
                        "batch size, the stored standardisation included)")
    parser.add_argument("--opset", type=_opset, default=onnx_export.DEFAULT_OPSET,
                        help=f"ONNX operator set, {onnx_export.MIN_OPSET} or newer "
                        f"(default {onnx_export.DEFAULT_OPSET})")


def run(args) -> int:
    """Load, convert, write; every failure is an exception the CLI prints in one line."""
    from .files import load

    onnx_export.require()  # before any work: the install line, not a half-done export
    check_outputs([args.onnx], [args.model])
    with warnings.catch_warnings():
        # A bfloat16 model loads as float32 on the CPU, which is what ONNX gets anyway.
        warnings.simplefilter("ignore", UserWarning)
        model = load(args.model, device=NumpyBackend())
    onnx_export.save_onnx(model, args.onnx, opset=args.opset)
    print(f"wrote {args.onnx}: ONNX opset {args.opset}, input 'input' (batch, "
          f"{model.input_dim}) float32, output 'output' (batch, {model.output_dim})")
    for line in input_lines(model):
        print(line)
    return 0


def input_lines(model) -> list[str]:
    """What the graph's input columns are, for a model trained by ``gpunn train`` on a
    table: the graph holds the standardisation but not the column encoding, so a user
    feeding it must know the encoded columns and their order."""
    from .cli_data import columns_ok
    from .data.tables import feature_names

    columns = (model.extra or {}).get("columns")
    if not columns or not columns_ok(columns):
        return []
    names = feature_names(columns)
    if len(names) != model.input_dim:
        return []
    lines = [f"input columns, in order: {', '.join(names)}"]
    encoded = [c for c in columns if c["kind"] != "numeric" or c.get("parse")]
    if encoded:
        lines.append("the graph takes these encoded, not the table's raw columns: "
                     "categories one 0/1 column each (name=category), dates as days since "
                     "1970-01-01, numbers written as text as numbers; gpunn predict and "
                     "model.predict(DataFrame) encode raw columns")
    if (model.extra or {}).get("task") == "regression" and \
            getattr(model, "target_scaler", None) is not None:
        lines.append("output: in the target's units (its standardisation is undone in the "
                     "graph)")
    return lines
