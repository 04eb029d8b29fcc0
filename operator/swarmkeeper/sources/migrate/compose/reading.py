"""Reading a compose file: YAML 1.1, as the docker CLI reads it, with the position of every key.

Compose files are YAML 1.1 to docker (go-yaml v2): ``mode: 0400`` is octal and ``yes`` a boolean,
so they are read that way here rather than as the YAML 1.2 of spec files. Errors never quote the
file: a line of it may hold a secret.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from ....loading import SpecError
from ....loading.fieldpath import FieldPath, Position

Data = Any  # parsed YAML: dicts, lists and scalars

MAX_COMPOSE_BYTES = 4 * 1024 * 1024


def read_compose(text: str, file: Path) -> tuple[Data, dict[FieldPath, Position], list[SpecError]]:
    if len(text.encode("utf-8", "surrogatepass")) > MAX_COMPOSE_BYTES:
        return None, {}, [SpecError("is larger than 4 MiB", file=file)]
    yaml = YAML(typ="rt")
    # Compose files are YAML 1.1 to the docker CLI (go-yaml v2): `mode: 0400` is octal, `yes` a boolean.
    yaml.version = (1, 1)
    try:
        root = yaml.load(text)
    except YAMLError as exc:
        return None, {}, [_yaml_error(exc, file)]
    except RecursionError:
        return None, {}, [SpecError("nested too deeply", file=file)]
    positions: dict[FieldPath, Position] = {}
    data = _plain(root, (), positions)
    if not isinstance(data, dict):
        return None, {}, [SpecError("a compose file is a mapping with a services: key", file=file, line=1)]
    return data, positions, []


def _yaml_error(exc: YAMLError, file: Path) -> SpecError:
    # ruamel's own text quotes source lines; a compose file may hold a secret in one. Problem only.
    if isinstance(exc, MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        problem = str(exc.problem or exc.context or "invalid YAML").split("\n", 1)[0]
        if mark is not None:
            return SpecError(problem, file=file, line=mark.line + 1, column=mark.column + 1)
        return SpecError(problem, file=file)
    return SpecError(f"invalid YAML ({type(exc).__name__})", file=file)


def _plain(node: Any, path: FieldPath, positions: dict[FieldPath, Position]) -> Data:
    """ruamel's round-trip objects → plain data, recording where each key and item was written."""
    if isinstance(node, CommentedMap):
        out: dict[str, Any] = {}
        for key in node:  # merged (`<<:`) keys included; they have no position of their own
            child = (*path, str(key))
            try:
                line, column = node.lc.key(key)
                positions[child] = (line + 1, column + 1)
            except (KeyError, TypeError):
                pass
            out[str(key)] = _plain(node[key], child, positions)
        return out
    if isinstance(node, CommentedSeq):
        items = []
        for i, item in enumerate(node):
            try:
                line, column = node.lc.item(i)
                positions[(*path, i)] = (line + 1, column + 1)
            except (KeyError, TypeError, IndexError):
                pass
            items.append(_plain(item, (*path, i), positions))
        return items
    if node is None or isinstance(node, bool):
        return node
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    return str(node)
