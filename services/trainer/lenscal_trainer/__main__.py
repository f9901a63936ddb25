"""``python -m lenscal_trainer ARGS`` runs ``lenscal train ARGS`` (the trainer job)."""

import sys

from lenscal.cli import main

if __name__ == "__main__":
    sys.argv = ["lenscal", "train", *sys.argv[1:]]
    main()
