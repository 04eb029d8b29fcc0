"""Long-running controllers: one reconcile loop, fed by triggers, over the one engine."""
