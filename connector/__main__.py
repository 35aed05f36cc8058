"""`python -m connector ...` is the same as the `loyalty-connector` console script."""

from connector.cli import main

raise SystemExit(main())
