"""Speed and memory benchmark of TND against its peers (same as ``tnd bench``).

    python benchmarks/bench_speed.py [--quick] [--large] [--out results.md]
"""

import sys

from tnd.apps.bench import main

if __name__ == "__main__":
    sys.exit(main())
