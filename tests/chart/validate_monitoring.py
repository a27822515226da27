"""Validates Prometheus Operator objects (ServiceMonitor, PodMonitor, PrometheusRule) strictly.

Reads a JSON array of objects on stdin; checks each against the monitoring.coreos.com/v1 models
of PyPI `cloudcoil-models-prometheus-operator` (generated from the Prometheus Operator's CRDs),
with unknown fields refused, as `kubectl apply --validate=strict` would. Prints one line per
problem and exits 1 when there is any.
"""
import json
import sys

import cloudcoil.pydantic

# Refuse unknown fields everywhere: set before the models are defined, so they inherit it.
cloudcoil.pydantic.BaseModel.model_config["extra"] = "forbid"

from cloudcoil.models.prometheus_operator import v1  # noqa: E402

KINDS = {"ServiceMonitor": v1.ServiceMonitor, "PodMonitor": v1.PodMonitor, "PrometheusRule": v1.PrometheusRule}

problems = 0
for obj in json.load(sys.stdin):
    name = f'{obj.get("kind")}/{obj.get("metadata", {}).get("name")}'
    model = KINDS.get(obj.get("kind"))
    if obj.get("apiVersion") != "monitoring.coreos.com/v1" or model is None:
        print(f"{name}: not a monitoring.coreos.com/v1 kind this checks")
        problems += 1
        continue
    try:
        model.model_validate_json(json.dumps(obj), strict=True)
    except Exception as err:  # pydantic.ValidationError, reported whole
        print(f"{name}: {err}")
        problems += 1
sys.exit(1 if problems else 0)
