import subprocess
import sys

import pytest

import gpunn as gn


def test_set_and_get_precision():
    assert gn.get_precision() == "fp32"
    try:
        gn.set_precision("tf32")
        assert gn.get_precision() == "tf32"
    finally:
        gn.set_precision("fp32")
    with pytest.raises(ValueError, match="precision: expected one of fp32, tf32, got 'fp16'"):
        gn.set_precision("fp16")


def test_set_precision_does_not_import_cupy():
    code = "import sys, gpunn; gpunn.set_precision('tf32'); print('cupy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"
