"""``python -m streamer_client``: the same command line as ``streamer-client``."""

from streamer_client.cli import main

raise SystemExit(main())
