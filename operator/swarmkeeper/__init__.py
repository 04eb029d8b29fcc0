"""swarmkeeper: a declarative control plane for Docker Swarm.

Layers, each importing only those before it: ``api`` → ``loading`` / ``schema`` → ``swarm`` →
``engine`` → ``sources`` → ``cli``.
"""

__version__ = "0.1.0"
