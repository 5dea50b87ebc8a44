"""Deterministic tokens for sensitive fields (`network.ip`, `network.ssid`).

A token is `"<key_id>:<hex HMAC-SHA256 of the value>"`: the same value under the same key always
gives the same token, so silver and gold can still count distinct IPs and SSIDs, while the value
itself cannot be read back without the key. The key id prefix lets the key rotate: tokens made
under different keys never collide and say which key made them.

Values are replaced before anything is written anywhere (object storage, registry, logs, error
messages), for rejected events as well as accepted ones.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from lake_config.settings import Settings

# (section, field) pairs holding sensitive values in every event schema so far.
SENSITIVE_FIELDS: tuple[tuple[str, str], ...] = (("network", "ip"), ("network", "ssid"))
# Below orjson's serialization limit (254 levels) and far below Python's recursion limit.
MAX_PAYLOAD_DEPTH = 128


class Tokenizer:
    """HMAC-SHA256 tokens under one key; the keyed inner/outer state is computed once."""

    def __init__(self, key: bytes, key_id: str) -> None:
        if not key:
            raise ValueError("token key must not be empty")
        if not key_id or ":" in key_id:
            raise ValueError("token key id must be non-empty and contain no ':'")
        self.key_id = key_id
        self._prefix = f"{key_id}:"
        # hmac.new hashes the padded key into the inner and outer states; .copy() reuses them.
        self._base = hmac.new(key, digestmod=hashlib.sha256)

    @classmethod
    def for_settings(cls, settings: Settings) -> Tokenizer:
        """The tokenizer for `settings.token_key` / `token_key_id` (one per key, cached)."""
        return _tokenizer(settings.token_key.get_secret_value(), settings.token_key_id)

    def token(self, value: str) -> str:
        """`"<key_id>:<hexdigest>"` of `value` (UTF-8)."""
        mac = self._base.copy()
        mac.update(value.encode("utf-8", "surrogatepass"))
        return self._prefix + mac.hexdigest()

    def tokenize_event(
        self,
        event: dict[str, Any],
        fields: Sequence[tuple[str, str]] = SENSITIVE_FIELDS,
        memo: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """Replace the sensitive string values of a validated event, in place; returns it.

        `memo` (value -> token) saves recomputing the tokens of values repeated across the
        events of one batch, as a device's IP and SSID usually are; keep it for one batch only,
        so raw values do not outlive the request in memory.
        """
        for section_name, field in fields:
            section = event.get(section_name)
            if section is not None:
                value = section.get(field)
                if value is not None:
                    if memo is None:
                        section[field] = self.token(value)
                        continue
                    token = memo.get(value)
                    if token is None:
                        token = memo[value] = self.token(value)
                    section[field] = token
        return event

    def tokenize_payload(
        self, payload: Any, fields: Sequence[tuple[str, str]] = SENSITIVE_FIELDS
    ) -> Any:
        """A copy of a rejected, unvalidated payload with every sensitive value tokenized.

        The payload may have any shape, so this errs on the side of tokenizing: every object
        under a section key (`network`), at any depth and inside lists too (an SDK that wraps
        or nests events by mistake), has its sensitive fields tokenized, whatever their type
        (`str(value)` for numbers, lists, objects); a section that is not an object is
        tokenized whole, since it may carry the value in another shape. Only `null` is kept.

        Raises ValueError for a payload nested deeper than MAX_PAYLOAD_DEPTH: it could not be
        copied (or serialized by orjson) safely, so no copy of it is stored.
        """
        _check_depth(payload, MAX_PAYLOAD_DEPTH)
        return self._tokenize_node(payload, _by_section(tuple(fields)))

    def _tokenize_node(self, node: Any, sections: dict[str, tuple[str, ...]]) -> Any:
        if isinstance(node, list):
            return [self._tokenize_node(item, sections) for item in node]
        if not isinstance(node, dict):
            return node
        out: dict[str, Any] = {}
        for key, value in node.items():
            names = sections.get(key)
            if names is None or value is None:
                out[key] = self._tokenize_node(value, sections)
            elif isinstance(value, dict):
                out[key] = {
                    name: self._token_any(item)
                    if name in names and item is not None
                    else self._tokenize_node(item, sections)
                    for name, item in value.items()
                }
            else:
                out[key] = self._token_any(value)
        return out

    def _token_any(self, value: Any) -> str:
        return self.token(value if isinstance(value, str) else str(value))


def _check_depth(node: Any, limit: int) -> None:
    """Raise ValueError if containers nest deeper than `limit` (iterative: no recursion)."""
    stack = [(node, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > limit:
            raise ValueError(f"payload nests deeper than {limit} levels")
        stack.extend((child, depth + 1) for child in children)


@lru_cache(maxsize=8)
def _by_section(fields: tuple[tuple[str, str], ...]) -> dict[str, tuple[str, ...]]:
    grouped: dict[str, tuple[str, ...]] = {}
    for section, name in fields:
        grouped[section] = (*grouped.get(section, ()), name)
    return grouped


@lru_cache(maxsize=4)
def _tokenizer(key: str, key_id: str) -> Tokenizer:
    return Tokenizer(key.encode(), key_id)
