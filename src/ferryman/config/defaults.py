"""The gateway used when no file is given: seed 000's OpenRouter gateway."""

from __future__ import annotations

from ferryman.config.gateway import Gateway

OPENROUTER_URL = "https://openrouter.ai/api/v1"


def default_gateway(openrouter_url: str = OPENROUTER_URL) -> Gateway:
    """`/v1/*` and `/openrouter/*` to OpenRouter, for holders of a client key (also
    accepted as seed 000's `X-Client-API-Key`), with a key from the encrypted pool,
    60 requests a minute and 1000 an hour per client key, metered as LLM calls (model,
    tokens, cost).
    The same as `examples/openrouter-gateway.yaml`."""
    return Gateway.model_validate(
        {
            "upstreams": {
                "openrouter": {
                    "url": openrouter_url,
                    "provider": "openrouter",
                    "credential": "pool",
                    "timeout": {"connect": 5, "read": 300},
                }
            },
            "routes": [
                {
                    "name": "llm",
                    "path": "/v1",
                    "upstream": "openrouter",
                    "strip_prefix": True,
                    "auth": ["api_key"],
                    "api_key_headers": ["X-Client-API-Key"],
                    "limits": ["60/minute", "1000/hour"],
                    "meter": "llm",
                },
                {
                    "name": "openrouter",
                    "path": "/openrouter",
                    "upstream": "openrouter",
                    "strip_prefix": True,
                    "auth": ["api_key"],
                    "api_key_headers": ["X-Client-API-Key"],
                    "limits": ["60/minute", "1000/hour"],
                    "meter": "llm",
                },
            ],
        }
    )
