"""``python -m fststyle.evaluate``: the command's address; the evaluator is :mod:`fststyle.measures.evaluate`."""
import sys

from fststyle.measures.evaluate import main

if __name__ == "__main__":
    sys.exit(main())
