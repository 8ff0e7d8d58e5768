"""``ape run submit TASK_DIR``: submit a task as a requester (same command as ``ape ichain submit``)."""

from ichain._cli.request import submit as cli  # noqa: F401  (ape run looks for `cli`)
