"""``python -m streamer_client``: the same command line as ``streamer-client``."""

from .cli import main

raise SystemExit(main())
