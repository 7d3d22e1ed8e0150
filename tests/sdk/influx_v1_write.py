"""Writes points with the InfluxDB v1 Python client (`influxdb`), as a v1 writer starts up.

usage: influx_v1_write.py HOST PORT PASSWORD MEASUREMENT N [write-only]
Connects with user "writer" and PASSWORD (tocsin's ingest token as the password: Basic auth),
then ping(), create_database("telemetry"), get_list_database(), and write_points() of N points
(field v, one second apart, the newest now); with write-only, just ping() and the write. Prints each step; exits 0 when all succeeded,
3 with "status=CODE" when the server refused a step.
"""
import sys
import time

from influxdb import InfluxDBClient
from influxdb.exceptions import InfluxDBClientError


def main():
    host, port, password, measurement, n = sys.argv[1:6]
    write_only = sys.argv[6:7] == ["write-only"]
    client = InfluxDBClient(
        host=host,
        port=int(port),
        username="writer",
        password=password,
        database="telemetry",
        timeout=10,
        retries=1,
    )
    print("ping version=%s" % client.ping())
    try:
        if not write_only:
            client.create_database("telemetry")
            print("databases=%s" % [d["name"] for d in client.get_list_database()])
        now = int(time.time())
        points = [
            {"measurement": measurement, "tags": {"client": "influxdb-v1"},
             "time": now - i, "fields": {"v": float(i)}}
            for i in range(int(n))
        ]
        client.write_points(points, time_precision="s")
    except InfluxDBClientError as e:
        print("status=%s %s" % (e.code, e.content))
        sys.exit(3)
    print("wrote %s" % n)


if __name__ == "__main__":
    main()
