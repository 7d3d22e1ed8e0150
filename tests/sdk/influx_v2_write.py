"""Writes points with the InfluxDB v2 Python client (`influxdb-client`), as a v2 writer does.

usage: influx_v2_write.py URL TOKEN MEASUREMENT N
Sends `Authorization: Token TOKEN` (tocsin's ingest token). Calls health(), ping() and
version(), then writes N points synchronously (field v, one second apart, the newest now) to
bucket "b" of org "o". Prints each step; exits 0 when the write succeeded, 3 with
"status=CODE" when the server refused it.
"""
import sys
import time
import warnings

from influxdb_client import InfluxDBClient, Point, WritePrecision
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.rest import ApiException


def main():
    url, token, measurement, n = sys.argv[1:5]
    with InfluxDBClient(url=url, token=token, org="o", timeout=10_000) as client:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # health() is deprecated
            h = client.health()
        print("health status=%s version=%s message=%s" % (h.status, h.version, h.message))
        print("ping=%s version=%s build=%s" % (client.ping(), client.version(), client.build()))
        now = int(time.time())
        points = [
            Point(measurement).tag("client", "influxdb-client").field("v", float(i))
            .time(now - i, WritePrecision.S)
            for i in range(int(n))
        ]
        try:
            client.write_api(write_options=SYNCHRONOUS).write(
                bucket="b", record=points, write_precision=WritePrecision.S
            )
        except ApiException as e:
            print("status=%s %s" % (e.status, e.body))
            sys.exit(3)
    print("wrote %s" % n)


if __name__ == "__main__":
    main()
