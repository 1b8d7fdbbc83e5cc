#!/usr/bin/python3
"""A consumer of the original Python idempotency module, for the mixed-fleet
test (redis_migration_test.cpp, MixedFleet.*): it follows the original logic
(GET, then SET NX EX for a new event, SET EX once done) and parses every
record it reads into the original record model, as strictly as the model did.

    redis_mixed_fleet.py PORT SEED COUNT COPIES     consume the events
    redis_mixed_fleet.py PORT verify COUNT          parse every record

Events are evt-0000 ... evt-<COUNT-1>, each delivered 1..COPIES times, in an
order shuffled by SEED. The handler counts its runs in `runs:<event id>`.
Exits non-zero, saying why, when a record does not parse.
"""
import datetime
import json
import random
import sys
import time

import redis

PREFIX = "idempotency:events:"
TTL = 24 * 3600
STATUSES = ("PROCESSING", "COMPLETED", "FAILED")


class ProcessingRecord:
    """The original record model: these fields, these types; unknown fields
    are ignored."""

    def __init__(self, idempotency_key, event_id, event_type, status, result=None, error=None,
                 first_seen_at=None, completed_at=None):
        self.idempotency_key = idempotency_key
        self.event_id = event_id
        self.event_type = event_type
        self.status = status
        self.result = result
        self.error = error
        self.first_seen_at = first_seen_at
        self.completed_at = completed_at

    @classmethod
    def parse(cls, raw):
        data = json.loads(raw)
        if not isinstance(data, dict):
            raise ValueError("not an object")
        for name in ("idempotency_key", "event_id", "event_type", "status"):
            if not isinstance(data.get(name), str):
                raise ValueError(name + " is not a string")
        if data["status"] not in STATUSES:
            raise ValueError("unknown status " + data["status"])
        if data.get("result") is not None and not isinstance(data["result"], dict):
            raise ValueError("result is not an object")
        if data.get("error") is not None and not isinstance(data["error"], str):
            raise ValueError("error is not a string")
        first = datetime.datetime.fromisoformat(data["first_seen_at"])
        completed = data.get("completed_at")
        if completed is not None:
            completed = datetime.datetime.fromisoformat(completed)
        if data["status"] == "COMPLETED" and completed is None:
            raise ValueError("COMPLETED without completed_at")
        return cls(data["idempotency_key"], data["event_id"], data["event_type"], data["status"],
                   data.get("result"), data.get("error"), first, completed)

    def dumps(self):
        return json.dumps({
            "idempotency_key": self.idempotency_key,
            "event_id": self.event_id,
            "event_type": self.event_type,
            "status": self.status,
            "result": self.result,
            "error": self.error,
            "first_seen_at": self.first_seen_at.isoformat(),
            "completed_at": self.completed_at.isoformat() if self.completed_at else None,
        })


def now():
    return datetime.datetime.now(datetime.timezone.utc)


SEEN = {}  # (writer, status) -> count, for the report


def process(r, event, handler):
    """The original process(): one GET, SET NX EX, the handler, SET EX."""
    key = PREFIX + event["idempotency_key"]
    raw = r.get(key)
    if raw is not None:
        record = ProcessingRecord.parse(raw)
        writer = "idem" if b'"token"' in raw else "python"
        SEEN[(writer, record.status)] = SEEN.get((writer, record.status), 0) + 1
        if record.status in ("COMPLETED", "PROCESSING"):
            return "duplicate"
    record = ProcessingRecord(event["idempotency_key"], event["event_id"], event["event_type"], "PROCESSING",
                              first_seen_at=now())
    if raw is None:
        if not r.set(key, record.dumps(), nx=True, ex=TTL):
            return "duplicate"
    else:  # FAILED: the original retried it
        r.set(key, record.dumps(), ex=TTL)
    try:
        result = handler(event)
    except Exception as e:  # noqa: BLE001 - the original caught everything
        record.status, record.error, record.completed_at = "FAILED", str(e), now()
        r.set(key, record.dumps(), ex=TTL)
        raise
    record.status, record.result, record.completed_at = "COMPLETED", result, now()
    r.set(key, record.dumps(), ex=TTL)
    return "processed"


def main():
    r = redis.Redis(host="127.0.0.1", port=int(sys.argv[1]))
    count = int(sys.argv[3])
    ids = ["evt-%04d" % i for i in range(count)]
    if sys.argv[2] == "verify":
        for event_id in ids:
            raw = r.get(PREFIX + event_id)
            record = ProcessingRecord.parse(raw)
            if record.status != "COMPLETED" or not isinstance(record.result, dict):
                sys.exit("%s: %s, result %r" % (event_id, record.status, record.result))
        print("verified %d records" % count)
        return
    rng = random.Random(int(sys.argv[2]))
    copies = int(sys.argv[4])
    deliveries = [i for i in ids for _ in range(rng.randint(1, copies))]
    rng.shuffle(deliveries)

    def handler(event):
        r.incr("runs:" + event["event_id"])
        time.sleep(0.001)  # a handler takes a while: the other side meets it in progress
        return {"charged": event["event_id"], "by": "python"}

    counts = {"processed": 0, "duplicate": 0}
    r.set("python:started", 1)
    for event_id in deliveries:
        event = {"event_id": event_id, "event_type": "payment", "idempotency_key": event_id}
        try:
            counts[process(r, event, handler)] += 1
        except (ValueError, TypeError, KeyError) as e:
            sys.exit("python could not read the record of %s: %r" % (event_id, e))
    print("python: %d deliveries, %d processed, %d duplicates; read %s" % (
        len(deliveries), counts["processed"], counts["duplicate"],
        ", ".join("%d %s %s" % (n, w, st) for (w, st), n in sorted(SEEN.items()))))


if __name__ == "__main__":
    main()
