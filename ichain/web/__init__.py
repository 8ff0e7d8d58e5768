"""The iChain web page: `ape ichain web` (FastAPI + Jinja templates + a little vanilla JS/CSS).

Public API::

    from ichain.web import create_app, WebService
    app = create_app(WebService(account=acct, config=load_config()))
"""

from ichain.web.app import create_app
from ichain.web.service import WebService

__all__ = ["create_app", "WebService"]
