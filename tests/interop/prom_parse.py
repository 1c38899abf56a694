#!/usr/bin/env python3
"""Parses a Prometheus text exposition (the file named by the first argument) with the reference parser (prometheus_client)
and writes one line per sample to the file named by the second: NAME{label=value,...} VALUE
(labels sorted)."""
import sys

from prometheus_client.parser import text_string_to_metric_families

with open(sys.argv[2], "w") as out:
    for family in text_string_to_metric_families(open(sys.argv[1]).read()):
        for s in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            out.write(f"{s.name}{{{labels}}} {s.value}\n")
