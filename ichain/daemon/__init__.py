"""The provider daemon: a checkpointed event runner, handlers per event, SQLite state.

See :mod:`ichain.daemon.runner` (the loop), :mod:`ichain.daemon.state` (checkpoint, per-task
progress, transaction journal) and :mod:`ichain.daemon.provider` (the daemon itself).
"""
