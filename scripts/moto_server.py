"""moto server with DynamoDB requests handled one at a time.

moto 5.2's TransactWriteItems backs the table up (a deep copy) before it
writes and restores that copy when a condition fails, with no lock: a
cancelled transaction running beside another request puts back the table
as it was before, erasing that request's acknowledged writes. DynamoDB
never does (transactions are isolated). The worker's store steps are
conditional transactions whose cancellation is the normal answer to a
duplicate delivery, so on stock moto concurrent tickets lose writes that
AWS keeps. This launcher serializes DynamoDB requests (one lock around
moto's DynamoDB handler) and otherwise runs moto_server as it is; the
arguments are moto_server's.
"""

import sys
import threading

from moto.dynamodb.responses import DynamoHandler
from moto.server import main

_lock = threading.Lock()
_call_action = DynamoHandler.call_action


def _locked(self):
    with _lock:
        return _call_action(self)


DynamoHandler.call_action = _locked

if __name__ == "__main__":
    main(sys.argv[1:])
