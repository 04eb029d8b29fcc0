"""Front doors: produce desired specs and take status back; thin, no reconcile logic."""
