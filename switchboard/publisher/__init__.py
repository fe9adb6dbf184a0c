"""Publishing: the Publisher (timer, routing, sends now) and its channel workers."""

from switchboard.publisher.core import CLAIM_BATCH, Publisher
from switchboard.publisher.handover import JOB_ID
from switchboard.publisher.worker import SEND_BATCH, ChannelWorker

__all__ = ["CLAIM_BATCH", "JOB_ID", "SEND_BATCH", "ChannelWorker", "Publisher"]
