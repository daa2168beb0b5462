"""The published JSON Schema of results (``results.schema.json``) and the check of a file against it.

``first_problem(part, instance, path)`` says what is wrong with ``instance`` as
a part of the schema ('document' — the results.json document without its
results —, 'result' or 'stream_line'): the JSON path and message of the first
problem, or None.

jsonschema walks an instance at a few microseconds a keyword: ~15 s for a full
run's 11k results. So each part is also compiled once, here, into plain Python
predicates (``compile_schema``) that decide valid-or-not in one pass; only an
instance they reject is walked by jsonschema, which names the problem. The
predicates implement exactly the keywords the schema uses, with jsonschema's
meaning (an integer-valued float is an integer, a bool is no number), and
refuse to compile any other keyword, so the two cannot silently drift apart;
tests/test_results_robustness.py checks that they agree.
"""

from __future__ import annotations

import functools
import json
import numbers
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULTS_SCHEMA_PATH = Path(__file__).with_name("results.schema.json")
MESSAGE_CHARS = 200
ANNOTATIONS = frozenset({"$schema", "$id", "$defs", "$comment", "title", "description", "default", "examples"})

Check = Callable[[Any], bool]


@functools.lru_cache(maxsize=1)
def published_schema() -> dict[str, Any]:
    """The schema as published (a fresh parse each process: callers must not change it)."""
    return json.loads(RESULTS_SCHEMA_PATH.read_text(encoding="utf-8"))


def part_schema(part: str) -> dict[str, Any]:
    """A self-contained schema for one part: the document's skeleton (results only 'an array'), or a $def."""
    schema = published_schema()
    if part == "document":
        properties = dict(schema["properties"], results={"type": "array"})
        return {**{k: v for k, v in schema.items() if k not in ("$id", "$schema")}, "properties": properties}
    return {"$defs": schema["$defs"], "$ref": f"#/$defs/{part}"}


# --- the compiled predicates -------------------------------------------------------------------


def _is_number(value: Any) -> bool:
    """jsonschema's 'number': any numbers.Number but a bool (plain int and float first: they are most)."""
    return type(value) in (int, float) or (isinstance(value, numbers.Number) and not isinstance(value, bool))


TYPES: dict[str, Check] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "null": lambda v: v is None,
    "boolean": lambda v: isinstance(v, bool),
    "number": _is_number,
    "integer": lambda v: not isinstance(v, bool) and (isinstance(v, int) or (isinstance(v, float) and v.is_integer())),
}


def _strings(values: list[Any], keyword: str) -> frozenset[str]:
    if not all(isinstance(v, str) for v in values):
        raise ValueError(f"results schema: only string values are compiled for {keyword!r}")
    return frozenset(values)


def _type(value: Any, schema: dict, compile_: Callable) -> Check:
    tests = [TYPES[name] for name in ([value] if isinstance(value, str) else value)]
    return tests[0] if len(tests) == 1 else (lambda v: any(test(v) for test in tests))


def _enum(value: Any, schema: dict, compile_: Callable) -> Check:
    allowed = _strings(value, "enum")
    return lambda v: isinstance(v, str) and v in allowed


def _const(value: Any, schema: dict, compile_: Callable) -> Check:
    allowed = _strings([value], "const")
    return lambda v: isinstance(v, str) and v in allowed


def _required(value: Any, schema: dict, compile_: Callable) -> Check:
    return lambda v: not isinstance(v, dict) or all(name in v for name in value)


def _properties(value: Any, schema: dict, compile_: Callable) -> Check:
    checks = {name: compile_(sub) for name, sub in value.items()}
    return lambda v: not isinstance(v, dict) or all(checks[k](v[k]) for k in v.keys() & checks.keys())


def _additional(value: Any, schema: dict, compile_: Callable) -> Check:
    named = frozenset(schema.get("properties", {}))
    if value is False:
        return lambda v: not isinstance(v, dict) or v.keys() <= named
    check = compile_(value)
    return lambda v: not isinstance(v, dict) or all(check(item) for k, item in v.items() if k not in named)


def _items(value: Any, schema: dict, compile_: Callable) -> Check:
    check = compile_(value)
    return lambda v: not isinstance(v, list) or all(map(check, v))


def _min_items(value: Any, schema: dict, compile_: Callable) -> Check:
    return lambda v: not isinstance(v, list) or len(v) >= value


def _min_length(value: Any, schema: dict, compile_: Callable) -> Check:
    return lambda v: not isinstance(v, str) or len(v) >= value


def _minimum(value: Any, schema: dict, compile_: Callable) -> Check:
    return lambda v: not _is_number(v) or v >= value


def _any_of(value: Any, schema: dict, compile_: Callable) -> Check:
    checks = [compile_(sub) for sub in value]
    return lambda v: any(check(v) for check in checks)


def _all_of(value: Any, schema: dict, compile_: Callable) -> Check:
    checks = [compile_(sub) for sub in value]
    return lambda v: all(check(v) for check in checks)


def _if(value: Any, schema: dict, compile_: Callable) -> Check:
    if "else" in schema:
        raise ValueError("results schema: 'else' is not compiled")
    condition, then = compile_(value), compile_(schema.get("then", True))
    return lambda v: not condition(v) or then(v)


KEYWORDS: dict[str, Callable[[Any, dict, Callable], Check]] = {
    "type": _type, "enum": _enum, "const": _const, "required": _required, "properties": _properties,
    "additionalProperties": _additional, "items": _items, "minItems": _min_items, "minLength": _min_length,
    "minimum": _minimum, "anyOf": _any_of, "allOf": _all_of, "if": _if,
}
HANDLED_ELSEWHERE = frozenset({"then", "$ref"})


def compile_schema(root: dict[str, Any]) -> Check:
    """``root`` as one predicate; local ``#/$defs/...`` references only, each compiled once."""
    defs: dict[str, Check] = {}

    def reference(target: str) -> Check:
        name = target.removeprefix("#/$defs/")
        if name == target or name not in root.get("$defs", {}):
            raise ValueError(f"results schema: reference {target!r} is not compiled")
        if name not in defs:
            defs[name] = lambda v: defs[name](v)  # stands in while the definition compiles
            defs[name] = compile_(root["$defs"][name])
        return defs[name]

    def compile_(schema: Any) -> Check:
        if schema is True:
            return lambda v: True
        unknown = set(schema) - KEYWORDS.keys() - HANDLED_ELSEWHERE - ANNOTATIONS
        if unknown:
            raise ValueError(f"results schema: keywords {sorted(unknown)} are not compiled")
        checks = [KEYWORDS[k](value, schema, compile_) for k, value in schema.items() if k in KEYWORDS]
        if "$ref" in schema:
            checks.append(reference(schema["$ref"]))
        if len(checks) == 1:
            return checks[0]
        return lambda v: all(check(v) for check in checks)

    return compile_(root)


@functools.cache
def fast_check(part: str) -> Check:
    """``part``'s schema compiled to a predicate, once per process."""
    return compile_schema(part_schema(part))


@functools.cache
def validator(part: str) -> Any:
    """``part``'s jsonschema validator (Draft 2020-12), built once; used to name a problem."""
    import jsonschema

    return jsonschema.Draft202012Validator(part_schema(part))


# --- the problem, in one line ----------------------------------------------------------------


def schema_error(part: str, instance: Any, path: str) -> str:
    """'JSON path: message' of the first problem jsonschema finds in an instance the predicate rejected."""
    import jsonschema.exceptions

    error = jsonschema.exceptions.best_match(validator(part).iter_errors(instance))
    if error is None:  # cannot happen while the predicates keep jsonschema's meaning (tested)
        return f"{path}: does not match the results schema's {part!r}"
    message = " ".join(error.message.split())
    message = message if len(message) <= MESSAGE_CHARS else message[: MESSAGE_CHARS - 1] + "…"
    return f"{path}{error.json_path[1:]}: {message}"


def ragged_error_map(record: Any, path: str) -> str | None:
    """An error map's rows all have one length: the one rule the schema cannot state."""
    if not isinstance(record, dict):
        return None
    for n, tensor in enumerate(record.get("tensors") or ()):
        rows = tensor.get("error_map") or []
        for t, row in enumerate(rows):
            if len(row) != len(rows[0]):
                return (f"{path}.tensors[{n}].error_map[{t}]: a row of {len(row)} values, "
                        f"the first row has {len(rows[0])}")
    return None


def first_problem(part: str, instance: Any, path: str = "$") -> str | None:
    """What is wrong with ``instance`` as ``part`` ('JSON path: message', the path under ``path``), or None."""
    if not fast_check(part)(instance):
        return schema_error(part, instance, path)
    return ragged_error_map(instance, path) if part in ("result", "stream_line") else None
