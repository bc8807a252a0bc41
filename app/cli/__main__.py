"""`python -m app.cli ...`: the same commands as `metrics-service ...`."""

import sys

from app.cli import main

if __name__ == "__main__":
    sys.exit(main(prog="python -m app.cli"))
