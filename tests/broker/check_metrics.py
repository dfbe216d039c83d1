#!/usr/bin/env python3
"""Checks a Prometheus /metrics exposition with the real parser (prometheus_client).

usage: check_metrics.py URL|- [EXPECTATION...]

URL is fetched with GET (its Content-Type must be the 0.0.4 text format); "-" reads the
exposition from stdin. Every family must carry # HELP and # TYPE. Each EXPECTATION is either

  NAME=VALUE    a sample NAME without labels whose value is VALUE
  NAME          a sample NAME without labels exists
  {"name": ..., "labels": {...}, "value": ..., "type": ..., "absent": true}
                JSON, for label values no shell quoting survives (quotes, backslashes,
                newlines): the sample NAME with exactly these labels exists (or, with
                "absent", does not), has this value, and its family has this type.

Exits 0 when everything holds, else 1 with one line per problem on stderr.
"""

import json
import math
import sys
import urllib.request

try:
    from prometheus_client.parser import text_string_to_metric_families
except ImportError:
    # A pyenv or venv python does not see Debian's python3-prometheus-client; the module is
    # pure Python, so the system copy works from any 3.x.
    sys.path.append("/usr/lib/python3/dist-packages")
    from prometheus_client.parser import text_string_to_metric_families


def fetch(url):
    if url == "-":
        return sys.stdin.buffer.read().decode("utf-8"), []
    with urllib.request.urlopen(url, timeout=30) as r:
        problems = []
        ctype = r.headers.get("Content-Type", "")
        if not ctype.startswith("text/plain; version=0.0.4"):
            problems.append(f"Content-Type is {ctype!r}, not the 0.0.4 text format")
        return r.read().decode("utf-8"), problems


def parse_expectation(arg):
    if arg.startswith("{"):
        e = json.loads(arg)
        if not isinstance(e, dict) or "name" not in e:
            raise ValueError(f"expectation without a name: {arg!r}")
        e.setdefault("labels", {})
        return e
    name, sep, value = arg.partition("=")
    e = {"name": name, "labels": {}}
    if sep:
        e["value"] = float(value)
    return e


def same_value(a, b):
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b or abs(a - b) <= 1e-9 * max(abs(a), abs(b))


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    problems = []
    try:
        text, problems = fetch(argv[1])
        families = list(text_string_to_metric_families(text))
    except Exception as e:  # the parser raises ValueError and friends on a bad exposition
        print(f"check_metrics: cannot read or parse the exposition: {e!r}", file=sys.stderr)
        return 1

    seen_families = set()
    samples = {}  # (sample name, frozen labels) -> (value, family type)
    for f in families:
        if f.name in seen_families:
            problems.append(f"family {f.name} appears twice")
        seen_families.add(f.name)
        if f.type == "unknown":
            problems.append(f"family {f.name} has no # TYPE line")
        if not f.documentation:
            problems.append(f"family {f.name} has no # HELP text")
        for s in f.samples:
            key = (s.name, frozenset(s.labels.items()))
            if key in samples:
                problems.append(f"sample {s.name}{s.labels} appears twice")
            samples[key] = (s.value, f.type)

    for arg in argv[2:]:
        try:
            e = parse_expectation(arg)
        except ValueError as err:
            problems.append(f"bad expectation {arg!r}: {err}")
            continue
        key = (e["name"], frozenset(e["labels"].items()))
        what = f"{e['name']}{json.dumps(e['labels'])}"
        found = samples.get(key)
        if e.get("absent"):
            if found is not None:
                problems.append(f"{what} should be absent, has value {found[0]}")
            continue
        if found is None:
            near = sorted(f"{n}{dict(l)}" for (n, l) in samples if n == e["name"])
            problems.append(f"{what} is missing (samples of that name: {near})")
            continue
        value, typ = found
        if "value" in e and not same_value(value, float(e["value"])):
            problems.append(f"{what} is {value}, expected {e['value']}")
        if "type" in e and typ != e["type"]:
            problems.append(f"{what} is of a {typ} family, expected {e['type']}")

    for p in problems:
        print(f"check_metrics: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
