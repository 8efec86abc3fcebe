#!/usr/bin/env python
"""ATLAS Open Data -> BumpNet histograms: `python runner.py --help`."""

import sys

from processor.run.cli import main

if __name__ == "__main__":
    sys.exit(main())
