"""Scrapes a Prometheus endpoint (the URL in argv[1]) with urllib and parses
it with the Prometheus project's own Python parser. Prints the text and
every sample as JSON: {"status", "content_type", "text", "samples":
[{"family", "type", "name", "labels", "value"}]}."""

import json
import sys
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

with urllib.request.urlopen(sys.argv[1], timeout=10) as response:
    status = response.status
    content_type = response.headers.get("content-type")
    text = response.read().decode("utf-8")

samples = []
for family in text_string_to_metric_families(text):
    for sample in family.samples:
        samples.append(
            {
                "family": family.name,
                "type": family.type,
                "name": sample.name,
                "labels": sample.labels,
                "value": sample.value,
            }
        )
print(
    json.dumps(
        {
            "status": status,
            "content_type": content_type,
            "text": text,
            "samples": samples,
        }
    )
)
