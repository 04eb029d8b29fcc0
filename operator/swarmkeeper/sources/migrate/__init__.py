"""The ways in for existing stacks: a compose file (``compose``) or what runs in a swarm
(``export``) translated into spec documents, and those written as spec files (``writing``).

Nothing here changes the swarm or reads a secret value; taking running objects over is
``apply --adopt``'s job.
"""
