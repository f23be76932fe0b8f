"""`python -m streamer_infra`: the `streamer` command (`dev`, `demo`, `token`, ...)."""

from streamer_infra.cli import main

raise SystemExit(main())
