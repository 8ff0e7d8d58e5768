"""The requester: a task from a folder on disk to a verified, rated result (protocol v2).

- :mod:`ichain.requester.session`: :class:`RequesterSession`, one task's persisted session (pick the provider
  and its trusted validator, post, follow, open the accept's locator and verify the result, open a failure
  report, rate, refund).
- :mod:`ichain.requester.policy`: what to do about a party that stays silent (refund).
- :mod:`ichain.requester.flow`: the whole round with that policy (``ape ichain submit`` and the demo).
- :mod:`ichain.requester.format`: amounts and records as the CLI and the web page show them.
"""

from ichain.requester.flow import RoundResult, failure_lines, run_round
from ichain.requester.policy import Advice, Recovery, advise, assess, recover
from ichain.requester.session import (
    RATEABLE, SETTLED, TERMINAL, RequestError, RequesterSession, read_metrics, validator_rank_key,
)

__all__ = ["Advice", "RATEABLE", "Recovery", "RequestError", "RequesterSession", "RoundResult", "SETTLED",
           "TERMINAL", "advise", "assess", "failure_lines", "read_metrics", "recover", "run_round",
           "validator_rank_key"]
