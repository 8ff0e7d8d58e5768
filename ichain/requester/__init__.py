"""The requester: a task from a folder on disk to a finalized, rated result.

- :mod:`ichain.requester.session`: :class:`RequesterSession`, one task's persisted session (post, follow,
  name the validator, fetch and verify the result, finalize, refund).
- :mod:`ichain.requester.policy`: what to do about a provider or validator that stays silent.
- :mod:`ichain.requester.flow`: the whole round with that policy (``ape ichain submit`` and the demo).
- :mod:`ichain.requester.format`: amounts and ratings as the CLI and the web page show them.
"""

from ichain.requester.flow import RoundResult, run_round
from ichain.requester.policy import Advice, Recovery, advise, assess, recover
from ichain.requester.session import TERMINAL, RequestError, RequesterSession, read_metrics

__all__ = ["Advice", "Recovery", "RequestError", "RequesterSession", "RoundResult", "TERMINAL", "advise",
           "assess", "read_metrics", "recover", "run_round"]
