"""Run the throughput benchmark from a checkout: ``python bench/bench.py --help``.

Same as ``gpunn bench``; see gpunn/bench.py for what is measured.
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from gpunn.bench import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
