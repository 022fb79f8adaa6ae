"""`python -m app` starts the console."""

from app.ui.main import main

raise SystemExit(main())
