"""Secret scopes, keys, ACL permissions and ``{{secrets/scope/key}}`` references. No I/O.

A reference is the whole value of a field: ``{{secrets/llm/openai}}`` names secret
``openai`` in scope ``llm``; a string that merely contains one is not a reference. In an
endpoint config, references may appear anywhere in an external model's provider block
(the credential fields, and ``*_plaintext`` fields once the server has stored their
values) and as values of ``environment_vars``; :func:`references_in` finds them all.
This module is the only reader of references: :func:`parse_reference` for one value,
:func:`references_of` for every one inside a block.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from modelport.errors import InvalidParameterValue

__all__ = [
    "ENDPOINT_SCOPE_PREFIX",
    "MASK",
    "MAX_NAME_LENGTH",
    "MAX_VALUE_BYTES",
    "ScopePermission",
    "SecretReference",
    "SecretResolver",
    "endpoint_scope",
    "keep_masked",
    "parse_reference",
    "plaintext_fields",
    "reference",
    "references_in",
    "references_of",
    "replace_plaintext",
    "validate_key",
    "validate_scope_name",
]

MAX_NAME_LENGTH = 128
#: Databricks' limit on one secret value.
MAX_VALUE_BYTES = 128 * 1024
#: Scopes the server creates to hold an endpoint's inline (``*_plaintext``) credentials.
#: No principal is granted anything on them, so only admins and the server can read them.
ENDPOINT_SCOPE_PREFIX = "modelport-endpoint-"
#: What a GET shows in place of every ``*_plaintext`` value (``control/render.py``).
MASK = "[REDACTED]"
#: Fields of a provider block that say where its credentials are sent.
_DESTINATION_SUFFIXES = ("_url", "_base")

_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+\Z")  # \Z: "$" matches before a final newline
_REF_RE = re.compile(r"^\{\{secrets/([^/{}]+)/([^/{}]+)\}\}\Z")
_PLAINTEXT = "_plaintext"

#: ``(scope, key) -> value``; raises :class:`~modelport.errors.ModelportError` when missing.
SecretResolver = Callable[[str, str], str]


class ScopePermission(IntEnum):
    """ACL permissions on a scope; each includes the rights of the lower ones."""

    READ = 1  # read secret values and list keys; reference the scope's secrets in configs
    WRITE = 2  # also put and delete secrets
    MANAGE = 3  # also change the scope's ACLs and delete the scope

    @classmethod
    def parse(cls, value: Any, path: str = "permission") -> ScopePermission:
        try:
            return cls[str(value).upper()]
        except KeyError:
            raise InvalidParameterValue(
                f"Invalid value for '{path}': '{value}' is not one of READ, WRITE, MANAGE."
            ) from None


def _name(value: Any, path: str, what: str) -> str:
    if value is None or value == "":
        raise InvalidParameterValue(f"Missing required field '{path}'.")
    if not isinstance(value, str):
        raise InvalidParameterValue(f"Invalid value for '{path}': must be a string.")
    if len(value) > MAX_NAME_LENGTH or not _NAME_RE.match(value):
        raise InvalidParameterValue(
            f"Invalid value for '{path}': {what} '{value[:MAX_NAME_LENGTH]}' must be 1-{MAX_NAME_LENGTH} "
            "letters, digits, dashes (-), underscores (_) and periods (.)."
        )
    return value


def validate_scope_name(value: Any, path: str = "scope") -> str:
    return _name(value, path, "scope name")


def validate_key(value: Any, path: str = "key") -> str:
    return _name(value, path, "secret key")


def endpoint_scope(endpoint_id: str) -> str:
    return f"{ENDPOINT_SCOPE_PREFIX}{endpoint_id}"


def reference(scope: str, key: str) -> str:
    return f"{{{{secrets/{scope}/{key}}}}}"


def parse_reference(value: Any) -> tuple[str, str] | None:
    """``(scope, key)`` when ``value`` is a whole ``{{secrets/scope/key}}`` reference, else None."""
    if not isinstance(value, str):
        return None
    match = _REF_RE.match(value)
    return None if match is None else (match.group(1), match.group(2))


@dataclass(frozen=True)
class SecretReference:
    """One reference found in a config: where it is (a field path) and what it names."""

    path: str
    scope: str
    key: str

    @property
    def text(self) -> str:
        return reference(self.scope, self.key)


def _walk(value: Any, path: str) -> Iterator[tuple[str, Any]]:
    if isinstance(value, Mapping):
        for k, v in value.items():
            yield from _walk(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _walk(v, f"{path}[{i}]")
    else:
        yield path, value


def references_of(value: Any, path: str = "") -> Iterator[SecretReference]:
    """Every secret reference at any depth of ``value`` (a provider block, environment
    variables), in field order; each one's path starts with ``path``."""
    for where, item in _walk(value, path):
        parsed = parse_reference(item)
        if parsed is not None:
            yield SecretReference(where, *parsed)


def references_in(body: dict[str, Any]) -> list[SecretReference]:
    """Every secret reference of a stored (normalized) endpoint config, in field order."""
    found: list[SecretReference] = []
    for i, entity in enumerate(body.get("served_entities") or []):
        for part in ("external_model", "environment_vars"):
            if part in entity:
                found.extend(references_of(entity[part], f"config.served_entities[{i}].{part}"))
    return found


def _plaintexts(value: Any, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], str]]:
    if isinstance(value, dict):
        for k, v in value.items():
            if k.endswith(_PLAINTEXT) and isinstance(v, str) and v != "" and parse_reference(v) is None:
                yield (*path, k), v
            else:
                yield from _plaintexts(v, (*path, k))


def plaintext_fields(body: dict[str, Any]) -> Iterator[tuple[str, tuple[str, ...], str]]:
    """``(entity name, field path inside external_model, value)`` of every inline credential:
    a ``*_plaintext`` field whose value is not (yet) a secret reference."""
    for entity in body.get("served_entities") or []:
        external = entity.get("external_model")
        if isinstance(external, dict):
            for path, value in _plaintexts(external, ()):
                yield entity["name"], path, value


def replace_plaintext(
    body: dict[str, Any], store: Callable[[str, tuple[str, ...], str], str]
) -> dict[str, Any]:
    """A copy of ``body`` in which ``store(entity, path, value)`` (which returns a reference)
    has replaced every value :func:`plaintext_fields` finds. A ``*_plaintext`` value that is
    not a string is refused (without echoing it), so no credential is stored as is."""

    def swap(value: Any, entity: str, path: tuple[str, ...]) -> Any:
        if isinstance(value, dict):
            out = {}
            for k, v in value.items():
                if k.endswith(_PLAINTEXT) and v is not None and not isinstance(v, str):
                    where = ".".join(("external_model", *path, k))
                    raise InvalidParameterValue(
                        f"Invalid value for '{where}' of served entity '{entity}': must be a string."
                    )
                if k.endswith(_PLAINTEXT) and isinstance(v, str) and v != "" and parse_reference(v) is None:
                    out[k] = store(entity, (*path, k), v)
                else:
                    out[k] = swap(v, entity, (*path, k))
            return out
        if isinstance(value, list):
            return [swap(v, entity, path) for v in value]
        return value

    entities = []
    for entity in body.get("served_entities") or []:
        if isinstance(entity.get("external_model"), dict):
            entity = {**entity, "external_model": swap(entity["external_model"], entity["name"], ())}
        entities.append(entity)
    return {**body, "served_entities": entities}


def _masked(value: Any, path: tuple[str, ...]) -> Iterator[tuple[str, ...]]:
    if isinstance(value, dict):
        for k, v in value.items():
            if k.endswith(_PLAINTEXT) and v == MASK:
                yield (*path, k)
            else:
                yield from _masked(v, (*path, k))


def _at(value: Any, path: tuple[str, ...]) -> Any:
    for part in path:
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _destination(external: dict[str, Any], block: str) -> dict[str, Any]:
    fields = external.get(block)
    if not isinstance(fields, dict):
        return {}
    return {k: v for k, v in fields.items() if k.endswith(_DESTINATION_SUFFIXES)}


def keep_masked(
    body: dict[str, Any], current: list[dict[str, Any]]
) -> tuple[dict[str, Any], set[tuple[str, str]]]:
    """``body`` with every ``*_plaintext`` value that is :data:`MASK` replaced by what the same
    field of the same served entity holds in the first of the ``current`` configs (stored
    bodies, most relevant first) that has one: a config read with GET and written back
    unchanged keeps its stored credentials instead of storing the mask as the new one.

    A credential is kept only while it goes where it went: same provider, and the same
    ``*_url``/``*_base`` fields in the provider block (otherwise a writer could send a
    credential they cannot read to a server of their choosing). Raises
    :class:`InvalidParameterValue` naming the field when there is nothing to keep or the
    destination changed. Returns the new body and the ``(scope, key)`` of each secret
    reference kept, which the caller keeps without having to be able to read it.
    """
    kept: set[tuple[str, str]] = set()
    entities = []
    for i, entity in enumerate(body.get("served_entities") or []):
        external = entity.get("external_model")
        paths = list(_masked(external, ())) if isinstance(external, dict) else []
        if not paths:
            entities.append(entity)
            continue
        assert isinstance(external, dict)
        external = copy.deepcopy(external)
        olds = [
            e["external_model"]
            for cfg in current
            for e in cfg.get("served_entities") or []
            if e.get("name") == entity.get("name") and isinstance(e.get("external_model"), dict)
        ]
        for path in paths:
            where = ".".join((f"config.served_entities[{i}].external_model", *path))
            found = next((old for old in olds if _at(old, path) is not None), None)
            if found is None:
                raise InvalidParameterValue(
                    f"Invalid value for '{where}': '{MASK}' is what a GET shows in place of a stored "
                    f"credential, and served entity '{entity.get('name')}' has none there to keep. Give "
                    "the credential itself, or a {{secrets/scope/key}} reference in the field without "
                    "'_plaintext'."
                )
            before, after = _destination(found, path[0]), _destination(external, path[0])
            changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
            if found.get("provider") != external.get("provider"):
                changed.insert(0, "provider")
            if changed:
                raise InvalidParameterValue(
                    f"Invalid value for '{where}': '{MASK}' keeps the stored credential only while it "
                    f"is sent where it was, and {', '.join(changed)} changed. Give the credential again."
                )
            value = _at(found, path)
            parent = _at(external, path[:-1])
            assert isinstance(parent, dict)
            parent[path[-1]] = value
            ref = parse_reference(value)
            if ref is not None:
                kept.add(ref)
        entities.append({**entity, "external_model": external})
    return {**body, "served_entities": entities}, kept
