"""The one reconcile core: desired specs + actual swarm → ordered plan → apply → status.

Every front door (folder, Git, Kubernetes, the CLI) calls ``reconcile``; none builds payloads or
talks to the engine on its own.
"""
