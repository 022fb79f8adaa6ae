"""Entry point of the frozen ``tmc`` (console) executable."""

from app.cli import main

raise SystemExit(main())
