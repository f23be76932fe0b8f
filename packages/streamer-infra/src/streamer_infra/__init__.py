"""Streamer's deployment: the local stack and the Pulumi program, and the archive both run.

Entry points:

- ``streamer`` (or ``python -m streamer_infra``): ``streamer dev`` serves the API on this
  machine, ``streamer demo`` tries it, ``streamer token`` mints a development token
  (:mod:`streamer_infra.cli`; ``dev`` and ``demo`` need the ``local`` extra);
- ``python -m streamer_infra.deploy build|preview|up|destroy`` (``hatch run infra:...``):
  builds the Lambda archive and drives Pulumi (the ``aws`` extra);
- :mod:`streamer_infra.local`: the local stack as a library (``LocalStack``,
  ``BackgroundStack``), for tests and benchmarks;
- :mod:`streamer_infra.aws`: the Pulumi program (``Pulumi.yaml`` runs
  ``aws/__main__.py``);
- :mod:`streamer_infra.build`: the Lambda archive, and :mod:`streamer_infra.archive_twin`,
  the archive run as Lambda runs it.

Nothing is exported here: each entry point imports only what its extra installs.
"""

__all__: list[str] = []
