"""Apache Airflow provider for Tencent Cloud MPS image processing."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_INTEGRATION = "Tencent Cloud Media Processing Service (MPS)"


def get_provider_info() -> dict[str, Any]:
    """Describe this provider to Airflow's ProvidersManager (the `apache_airflow_provider` entry point).

    Pure data, no imports: Airflow calls this while building its provider registry (CLI, scheduler,
    triggerer, API server). It must validate against ``airflow/provider_info.schema.json`` or
    ``airflow providers list`` fails, and the ``connection-types`` entry also follows the stricter
    ``provider.yaml.schema.json`` so Airflow >= 3.2 can render the connection form without importing
    the hook.
    """
    return {
        "package-name": "airflow-provider-tencentcloud-mps",
        "name": "Tencent Cloud MPS",
        "description": "Tencent Cloud Media Processing Service (MPS) image processing: ProcessImage operators, "
        "sensor, deferrable triggers, and a local MPS + COS emulator.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": _INTEGRATION,
                "external-doc-url": "https://www.tencentcloud.com/document/product/1041",
                "tags": ["service"],
            }
        ],
        "hooks": [
            {
                "integration-name": _INTEGRATION,
                "python-modules": [
                    "airflow_mps.hooks.base",
                    "airflow_mps.hooks.mps",
                    "airflow_mps.hooks.cos",
                ],
            }
        ],
        "operators": [
            {
                "integration-name": _INTEGRATION,
                "python-modules": [
                    "airflow_mps.operators.base",
                    "airflow_mps.operators.mps",
                    "airflow_mps.operators.batch",
                ],
            }
        ],
        "sensors": [
            {
                "integration-name": _INTEGRATION,
                "python-modules": ["airflow_mps.sensors.mps", "airflow_mps.sensors.cos"],
            }
        ],
        "triggers": [
            {
                "integration-name": _INTEGRATION,
                "python-modules": [
                    "airflow_mps.triggers.mps",
                    "airflow_mps.triggers.batch",
                    "airflow_mps.triggers.cos",
                ],
            }
        ],
        "extra-links": ["airflow_mps.links.mps.MpsTaskLink", "airflow_mps.links.mps.MpsBatchOutputsLink"],
        "connection-types": [
            {
                "connection-type": "tencentcloud",
                "hook-class-name": "airflow_mps.hooks.mps.MpsHook",
                "hook-name": "Tencent Cloud",
                "ui-field-behaviour": {
                    "hidden-fields": ["host", "port", "schema"],
                    "relabeling": {"login": "SecretId", "password": "SecretKey"},
                    "placeholders": {
                        "login": "AKID... (empty: TENCENTCLOUD_SECRET_ID or the SDK default chain)",
                        "password": "SecretKey",
                        "extra": '{"region": "ap-guangzhou"}',
                    },
                },
                "conn-fields": {
                    "region": {
                        "label": "Region",
                        "description": "Tencent Cloud region, e.g. ap-guangzhou (COS buckets default to it).",
                        "schema": {"type": ["string", "null"]},
                    },
                    "endpoint": {
                        "label": "Endpoint",
                        "description": "host[:port] of the MPS API (and COS), or http(s)://host[:port] (the scheme "
                        "sets the protocol) - e.g. http://127.0.0.1:9100 for the local emulator; empty = "
                        "mps.tencentcloudapi.com and the region's COS endpoint.",
                        "schema": {"type": ["string", "null"]},
                    },
                    "protocol": {
                        "label": "Protocol",
                        "description": "https (default) or http (emulator).",
                        "schema": {"type": "string", "enum": ["https", "http"], "default": "https"},
                    },
                    "token": {
                        "label": "Session token",
                        "description": "STS temporary credential token (optional).",
                        "schema": {"type": ["string", "null"], "format": "password"},
                    },
                    "request_timeout": {
                        "label": "Request timeout (s)",
                        "description": "Per-request HTTP timeout in seconds (default 60).",
                        "schema": {"type": ["integer", "null"], "minimum": 1},
                    },
                    "process_image_rate": {
                        "label": "ProcessImage rate (req/s)",
                        "description": "Client-side pacing of ProcessImage per process (default 20, the API limit).",
                        "schema": {"type": ["number", "null"], "minimum": 0.1},
                    },
                    "describe_rate": {
                        "label": "Describe* rate (req/s)",
                        "description": "Client-side pacing of DescribeImageTaskDetail + DescribeImageTasks per "
                        "process (default 20, the strictest documented limit).",
                        "schema": {"type": ["number", "null"], "minimum": 0.1},
                    },
                    "ca_bundle": {
                        "label": "CA bundle",
                        "description": "Path of a PEM file of CA certificates to trust for MPS and COS over https "
                        "(e.g. the emulator's --tls certificate, a TLS-inspecting proxy's CA); empty = certifi.",
                        "schema": {"type": ["string", "null"]},
                    },
                    "proxy": {
                        "label": "Proxy",
                        "description": "http(s)://[user:password@]host[:port] of an HTTP proxy for MPS and COS; "
                        "empty = the HTTP(S)_PROXY environment variables.",
                        "schema": {"type": ["string", "null"]},
                    },
                },
            }
        ],
    }
