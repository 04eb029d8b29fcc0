"""The ways in for existing stacks: a compose file (``compose``) or what runs in a swarm
(``export``) translated into spec documents, and those written as spec files (``writing``).

Nothing here changes the swarm; taking running objects over is ``apply --adopt``'s job. A secret
value is read only to be copied into the specs folder (``writing.place_files``), never shown.
"""
