"""Sends CloudEvents made by the official CloudEvents Python SDK (`cloudevents`), with requests.

usage: cloudevents_send.py URL MODE EVENTS_JSON [TOKEN]
MODE is binary, structured or batch; EVENTS_JSON is a list of {"attributes": {...}, "data": ...}.
Prints the HTTP status and answer; exits 0 on 2xx, 3 otherwise.
"""
import json
import sys

import requests

try:  # cloudevents >= 2: the core API
    from cloudevents.core.bindings.http import to_binary_event, to_structured_event
    from cloudevents.core.v1.event import CloudEvent

    def make(attributes, data):
        return CloudEvent(attributes=attributes, data=data)

    def binary(e):
        m = to_binary_event(e)
        return m.headers, m.body

    def structured(e):
        m = to_structured_event(e)
        return m.headers, m.body
except ImportError:  # cloudevents 1.x
    from cloudevents.conversion import to_binary, to_structured
    from cloudevents.http import CloudEvent

    def make(attributes, data):
        return CloudEvent(attributes, data)

    def binary(e):
        return to_binary(e)

    def structured(e):
        return to_structured(e)


def main():
    url, mode, events = sys.argv[1:4]
    token = sys.argv[4] if len(sys.argv) > 4 else None
    evs = [make(dict(x["attributes"]), x.get("data")) for x in json.loads(events)]
    if mode == "binary":
        headers, body = binary(evs[0])
    elif mode == "structured":
        headers, body = structured(evs[0])
    elif mode == "batch":
        # The batch format is a JSON array of structured-mode events.
        items = [json.loads(structured(e)[1]) for e in evs]
        headers, body = {"Content-Type": "application/cloudevents-batch+json"}, json.dumps(items)
    else:
        print("unknown mode %r" % mode)
        return 2
    headers = dict(headers)
    if token:
        headers["Authorization"] = "Bearer " + token
    r = requests.post(url.rstrip("/") + "/v1/cloudevents", headers=headers, data=body, timeout=10)
    print("status=%d" % r.status_code)
    print(r.text)
    return 0 if 200 <= r.status_code < 300 else 3


if __name__ == "__main__":
    sys.exit(main())
