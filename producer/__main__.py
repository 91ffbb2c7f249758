"""``python -m producer VIDEO [options]`` — see :mod:`producer.cli`."""

import sys

from producer.cli import main

if __name__ == "__main__":
    sys.exit(main())
