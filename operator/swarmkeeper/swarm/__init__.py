"""Everything that talks to the Docker Engine, and the pure translation to and from its API.

``labels``, ``build`` and ``normalize`` are pure (model ↔ Engine API payloads); ``connect``,
``observe`` and ``mutate`` do the I/O. Nothing outside this package imports ``docker``.
"""
