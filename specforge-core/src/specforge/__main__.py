"""``python -m specforge`` is the ``specforge`` command (torchrun launches workers this way)."""

from specforge.cli import main

if __name__ == "__main__":
    main()
