"""The ``swarmkeeper`` command line: kubectl-like verbs over the one engine."""
