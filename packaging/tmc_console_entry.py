"""Entry point of the frozen ``tmc-console`` (windowed) executable."""

from app.ui.main import main

raise SystemExit(main())
