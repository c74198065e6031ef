"""Reading the probe request Agent OS sends on stdin (plugin protocol, version 1)."""

import json
import sys


def read_request(expected_op):
    """Returns the request object; exits 1 with a reason on stderr when it is not for us."""
    raw = sys.stdin.read()
    try:
        request = json.loads(raw) if raw.strip() else {}
    except json.JSONDecodeError as e:
        sys.exit(f"request is not JSON: {e}")
    if not isinstance(request, dict):
        sys.exit("request must be a JSON object")
    protocol = request.get("protocol", 1)
    if protocol != 1:
        sys.exit(f"protocol {protocol!r} is not supported; this plugin speaks protocol 1")
    op = request.get("op", expected_op)
    if op != expected_op:
        sys.exit(f"this program answers {expected_op}, not {op!r}")
    return request


def answer(document):
    json.dump(document, sys.stdout)
    sys.stdout.write("\n")
