"""Deterministic tokens, and the other per-field policies, for sensitive fields.

A token is `"<key_id>:<hex HMAC-SHA256 of the value>"`: the same value under the same key always
gives the same token, so silver and gold can still count distinct IPs and SSIDs, while the value
itself cannot be read back without the key. The key id prefix lets the key rotate: tokens made
under different keys never collide and say which key made them.

Values are replaced before anything is written anywhere (object storage, registry, logs, error
messages), for rejected events as well as accepted ones, following `Settings.sensitive_fields`:
`hmac` (the token above), `truncate_ip` (IPv4 to its /24 `a.b.c.0`, IPv6 to its /48; an accepted
event whose value is not an IP is rejected, and a rejected payload loses the value) or `drop`
(the field is removed). A field with no policy is tokenized, the safe default. Only the active
key (`token_key_id`) makes tokens; older keys' tokens stay as they are (see the README).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

from lake_config.settings import SENSITIVE_FIELD_PATHS, Settings

# (section, field) pairs holding sensitive values in every event schema so far.
SENSITIVE_FIELDS: tuple[tuple[str, str], ...] = tuple(
    (section, name) for section, _, name in (p.partition(".") for p in SENSITIVE_FIELD_PATHS)
)
# Fields of other shapes that carry a policed field's value: Segment's `context.ip` becomes
# `network.ip`, so a rejected Segment message follows `network.ip`'s policy.
SAME_POLICY_AS = {"context.ip": "network.ip"}
_DROP = object()
# Below orjson's serialization limit (254 levels) and far below Python's recursion limit.
MAX_PAYLOAD_DEPTH = 128


class SensitiveValueError(ValueError):
    """An accepted event's sensitive value cannot follow its policy (`truncate_ip` of a value
    that is not an IP). The message names the field, never the value."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class Tokenizer:
    """HMAC-SHA256 tokens under one key, plus the per-field policies (`policy`: path such as
    `network.ip` -> `hmac` | `truncate_ip` | `drop`; absent means `hmac`); the keyed inner/outer
    state is computed once."""

    def __init__(self, key: bytes, key_id: str, policy: Mapping[str, str] | None = None) -> None:
        if not key:
            raise ValueError("token key must not be empty")
        if not key_id or ":" in key_id:
            raise ValueError("token key id must be non-empty and contain no ':'")
        self.key_id = key_id
        self._prefix = f"{key_id}:"
        # hmac.new hashes the padded key into the inner and outer states; .copy() reuses them.
        self._base = hmac.new(key, digestmod=hashlib.sha256)
        unknown = sorted({p for p in (policy or {}).values()} - {"hmac", "truncate_ip", "drop"})
        if unknown:
            raise ValueError(f"unknown sensitive field policies {unknown}")
        self._policy = dict(policy or {})
        # (section, name) -> policy, filled as `policy` is asked (per event, for the schemas'
        # declared sensitive fields only: a few entries).
        self._field_policy: dict[tuple[str, str], str] = {}

    @classmethod
    def for_settings(cls, settings: Settings) -> Tokenizer:
        """The tokenizer for the active key (`token_key_id`) and `sensitive_fields` (cached)."""
        return _tokenizer(
            settings.active_token_key.get_secret_value(),
            settings.token_key_id,
            tuple(sorted(settings.sensitive_fields.items())),
        )

    def policy(self, section: str, name: str) -> str:
        """The policy of field `section.name` (`hmac` when none is set)."""
        policy = self._field_policy.get((section, name))
        if policy is None:
            path = f"{section}.{name}"
            policy = self._policy.get(SAME_POLICY_AS.get(path, path), "hmac")
            self._field_policy[section, name] = policy
        return policy

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

        Raises SensitiveValueError when a value cannot follow its policy (the event must then
        be rejected; the event may be partly changed already).
        """
        for section_name, field in fields:
            section = event.get(section_name)
            if section is not None:
                value = section.get(field)
                policy = self.policy(section_name, field)
                if policy == "drop":
                    section.pop(field, None)
                    continue
                if value is not None:
                    if policy == "truncate_ip":
                        truncated = truncate_ip(value)
                        if truncated is None:
                            path = f"{section_name}.{field}"
                            raise SensitiveValueError(
                                path, f"{path} is not a valid IPv4 or IPv6 address"
                            )
                        section[field] = truncated
                        continue
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
        (`str(value)` for numbers, lists, objects), or dropped or truncated as their policy
        says (under `truncate_ip` a value that is not an IP string is dropped); a section that
        is not an object is tokenized whole, since it may carry the value in another shape.
        Only `null` is kept.

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
                section: dict[str, Any] = {}
                for name, item in value.items():
                    if name not in names or item is None:
                        section[name] = self._tokenize_node(item, sections)
                        continue
                    protected = self._protect_any(key, name, item)
                    if protected is not _DROP:
                        section[name] = protected
                out[key] = section
            else:
                out[key] = self._token_any(value)
        return out

    def _protect_any(self, section: str, name: str, value: Any) -> Any:
        """`value` under its field's policy, or _DROP; what is not an IP under `truncate_ip` is
        dropped, since a rejected payload must not keep it raw."""
        policy = self.policy(section, name)
        if policy == "drop":
            return _DROP
        if policy == "truncate_ip":
            truncated = truncate_ip(value) if isinstance(value, str) else None
            return _DROP if truncated is None else truncated
        return self._token_any(value)

    def _token_any(self, value: Any) -> str:
        return self.token(value if isinstance(value, str) else str(value))


def truncate_ip(value: str) -> str | None:
    """The network address of `value`'s /24 (IPv4) or /48 (IPv6), or None if not an IP."""
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False).network_address)


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
def _tokenizer(key: str, key_id: str, policy: tuple[tuple[str, str], ...]) -> Tokenizer:
    return Tokenizer(key.encode(), key_id, dict(policy))
