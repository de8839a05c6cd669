"""Reading a YAML file that may be hostile: bounded, strict, and never blocking.

:func:`read_yaml` refuses, with :class:`ConfigError` naming the file (and the line or key):

* anything but a regular file (a FIFO, ``/dev/zero``, a directory): it is opened
  non-blocking and checked with ``fstat`` before a byte is read, so a FIFO cannot hang it;
* more than :data:`MAX_BYTES` bytes (only that many are ever read), or text that is not UTF-8;
* malformed YAML (with the line and column), a key given twice in one mapping;
* nesting deeper than :data:`MAX_DEPTH` (checked on the parser's events before any object is
  built, so the recursive composer never sees it);
* more than :data:`MAX_VALUES` values once aliases are expanded (a "billion laughs" file),
  strings longer than :data:`MAX_STRING` characters or holding a NUL byte (no path can).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import yaml

from legadapt.config.base import ConfigError

MAX_BYTES = 1 << 20  # 1 MiB: a config is a few KiB
MAX_DEPTH = 32  # nested mappings/sequences; the deepest shipped config has 5
MAX_VALUES = 100_000  # values after alias expansion
MAX_STRING = 4096  # characters: PATH_MAX on Linux


class _StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict:
    seen: dict[object, int] = {}
    for key_node, _ in node.value:
        if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
            continue  # merge keys (<<) may be overridden; non-scalar keys are refused by the schema
        key = loader.construct_object(key_node)
        line = key_node.start_mark.line + 1
        if key in seen:
            raise ConfigError(f"line {line}: key {key!r} given twice in one mapping (first on line {seen[key]}); "
                              "keep one of them")
        seen[key] = line
    return loader.construct_mapping(node)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _read_bounded(p: Path, what: str) -> str:
    """The text of the regular file ``p`` (at most :data:`MAX_BYTES`), without blocking on special files."""
    try:
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise ConfigError(f"{p}: {what} not found") from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path
        raise ConfigError(f"{p}: cannot open {what}: {getattr(exc, 'strerror', None) or exc}") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        kind = ("a directory" if stat.S_ISDIR(mode) else "a FIFO (named pipe)" if stat.S_ISFIFO(mode)
                else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode)
                else "not a regular file")
        raise ConfigError(f"{p}: the {what} is {kind}, not a regular file; give the path of a YAML file")
    with os.fdopen(fd, "rb") as f:
        try:
            raw = f.read(MAX_BYTES + 1)
        except OSError as exc:
            raise ConfigError(f"{p}: cannot read {what}: {exc.strerror or exc}") from None
    if len(raw) > MAX_BYTES:
        raise ConfigError(f"{p}: the {what} is larger than {MAX_BYTES // 1024} KiB (a config is a few KiB): is it the right file?")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{p}: the {what} is not UTF-8 text (byte {exc.start}): is it the right file?") from None


def _check_depth(text: str, p: Path, what: str) -> None:
    """Refuse nesting deeper than :data:`MAX_DEPTH`, from the parser's events (iterative, no objects built)."""
    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
            if depth > MAX_DEPTH:
                raise ConfigError(f"{p}:{event.start_mark.line + 1}: the {what} nests mappings/lists more than "
                                  f"{MAX_DEPTH} levels deep; no option needs more than a few")
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1


def _check_values(data: object, p: Path, what: str) -> None:
    """Refuse more than :data:`MAX_VALUES` values (aliases expanded) and strings no path or name can be."""
    stack: list[tuple[str, object]] = [("(top level)", data)]
    count = 0
    while stack:
        where, value = stack.pop()
        count += 1
        if count > MAX_VALUES:
            raise ConfigError(f"{p}: the {what} expands to more than {MAX_VALUES:,} values (YAML aliases "
                              "repeated inside each other?); write the values out")
        if isinstance(value, str) and (len(value) > MAX_STRING or "\0" in value):
            problem = "holds a NUL byte" if "\0" in value else f"is {len(value):,} characters long (at most {MAX_STRING})"
            raise ConfigError(f"{p}: {where}: the text {problem}; no path or name can")
        if isinstance(value, dict):
            stack.extend((f"{where}.{k}" if where != "(top level)" else str(k), v) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((f"{where}[{i}]", v) for i, v in enumerate(value))


def read_yaml(path: str | Path, what: str = "config file") -> object:
    """The parsed YAML of ``path`` (None for an empty file), or :class:`ConfigError` (see the module docstring)."""
    p = Path(path)
    text = _read_bounded(p, what)
    try:
        _check_depth(text, p, what)
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except ConfigError as exc:
        raise ConfigError(f"{p}: {exc}" if str(exc).startswith("line ") else str(exc)) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{p}{where}: malformed YAML: {problem}; fix the syntax at that line") from None
    except (ValueError, OverflowError) as exc:  # e.g. an integer of more than 4300 digits
        raise ConfigError(f"{p}: the {what} holds a value that cannot be read ({str(exc).split(';')[0]})") from None
    except RecursionError:
        raise ConfigError(f"{p}: the {what} nests too deeply to read") from None
    _check_values(data, p, what)
    return data
