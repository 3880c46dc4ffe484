"""Model files, in one package: the format and its checks (:mod:`.format`), writing
(:mod:`.write`), the safetensors container (:mod:`.safetensors_format`), loading into a
model (:mod:`.load`) and ONNX export (:mod:`.onnx_export`). Never pickle; atomic writes."""

from .format import ModelFileError
from .load import assemble, load, loads
from .write import dumps, save

__all__ = ["save", "load", "dumps", "loads", "assemble", "ModelFileError"]
