"""``python -m dynheads.models.verify``: see :mod:`dynheads.models.verify.generations`."""

from .generations import main

if __name__ == "__main__":
    main()
