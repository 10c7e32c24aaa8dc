"""`python -m bench ...` (also the entry point for `torchrun -m bench`)."""

from bench.cli import main

raise SystemExit(main())
