"""CreateEvents through the official Huawei Cloud Python SDK (huaweicloudsdkces).

usage: huawei_create.py URL AK SK PROJECT_ID EVENTS_JSON
EVENTS_JSON is a list of {"event_name", "event_source", "time"?, "detail": {...}}; a missing
"time" means now. Prints the answer as JSON; exits 0 on success, 3 on a server error (prints
status= and code=).
"""
import json
import sys
import time

from huaweicloudsdkces.v1 import (CesClient, CreateEventsRequest, CreateEventsRequestBody,
                                  EventItemDetail, MetricsDimension)
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.exceptions import exceptions
from huaweicloudsdkcore.http.http_config import HttpConfig


def main():
    url, ak, sk, project_id, events = sys.argv[1:6]
    config = HttpConfig.get_default_config()
    config.ignore_ssl_verification = True
    config.timeout = (5, 10)
    client = (CesClient.new_builder()
              .with_http_config(config)
              .with_credentials(BasicCredentials(ak, sk, project_id))
              .with_endpoint(url)
              .build())
    body = []
    for e in json.loads(events):
        d = dict(e.get("detail", {}))
        if "dimensions" in d:
            d["dimensions"] = [MetricsDimension(name=x["name"], value=x["value"]) for x in d["dimensions"]]
        body.append(CreateEventsRequestBody(
            event_name=e["event_name"], event_source=e["event_source"],
            time=e.get("time", int(time.time() * 1000)), detail=EventItemDetail(**d)))
    try:
        resp = client.create_events(CreateEventsRequest(body=body))
    except exceptions.ClientRequestException as e:
        print("status=%s code=%s message=%s" % (e.status_code, e.error_code, e.error_msg))
        return 3
    print(json.dumps([{"event_id": x.event_id, "event_name": x.event_name} for x in resp.body]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
