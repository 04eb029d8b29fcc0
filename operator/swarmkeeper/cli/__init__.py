"""The ``swarmkeeper`` command line: kubectl-like verbs over the one engine."""

import atexit
import gc

# A command's start-up allocates nearly everything it will hold (typer, rich, pydantic and the
# models, the Docker client), and at the default pace of one collection per 700 allocations the
# collector walks that growing heap over and over: 140 collections and 50-75 ms of CPU for a no-op
# `apply`. A gen-0 threshold of 10,000 makes it 10 collections and half the time.
gc.set_threshold(10_000, *gc.get_threshold()[1:])
# At exit the interpreter would collect and free every object one by one, memory the OS takes
# back at once: 0.1 s of a no-op `apply`. A frozen heap is skipped. Exit handlers still run and
# streams are flushed; only objects held by reference cycles alone go unfinalised, as after
# os._exit.
atexit.register(gc.freeze)
