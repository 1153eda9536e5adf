"""``python -m symgen`` (and ``torchrun -m symgen``) runs the command line."""

from symgen.cli import main

raise SystemExit(main())
