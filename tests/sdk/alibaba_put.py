"""PutCustomEvent through the official Alibaba Cloud Python SDK (aliyun-python-sdk-cms).

usage: alibaba_put.py URL ACCESS_KEY_ID ACCESS_KEY_SECRET EVENTS_JSON
EVENTS_JSON is a list of {"EventName", "Content", "Time"?, "GroupId"?}.
Prints the answer; exits 0 on success, 3 on a server error (prints status= and code=).
"""
import json
import sys
from urllib.parse import urlparse

from aliyunsdkcore.acs_exception.exceptions import ServerException
from aliyunsdkcore.client import AcsClient
from aliyunsdkcms.request.v20190101.PutCustomEventRequest import PutCustomEventRequest


def main():
    url, ak, sk, events = sys.argv[1:5]
    u = urlparse(url)
    # The ordinary client; only the endpoint (host, port, plain http) points at tocsin.
    client = AcsClient(ak, sk, "cn-hangzhou", port=u.port or 80, auto_retry=False,
                       timeout=10, connect_timeout=5)
    req = PutCustomEventRequest()
    req.set_endpoint(u.hostname)
    req.set_protocol_type("http")
    req.set_EventInfos(json.loads(events))
    try:
        body = client.do_action_with_exception(req)
    except ServerException as e:
        print("status=%s code=%s message=%s" % (e.get_http_status(), e.get_error_code(), e.get_error_msg()))
        return 3
    print(body.decode("utf-8"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
