"""The HTTP API (design §4.2): `Api` serves the routes over the `Services` the
composition root hands it. One module per noun: posts, send, approvals,
incidents, people, feeds, health; common.py holds what they all share."""

from switchboard.api.common import Handler
from switchboard.api.core import Api
from switchboard.api.posts import LISTED_STATES, posting_role, role_for
from switchboard.api.services import Services

__all__ = ["LISTED_STATES", "Api", "Handler", "Services", "posting_role", "role_for"]
