"""A YAML document read with the line of every value, and ``${VAR}`` references expanded.

``read_document`` fills a ``Document``: the file as plain data, the line of every key and list
item, and the problems met on the way. To know those lines, the YAML is composed into nodes
(which keep their position) and turned into plain data by hand, instead of being loaded straight
into Python objects. ``${VAR}`` references in strings are resolved from the environment, and
every resolved value is registered with the given ``Redactor``, because those values are the
secrets that must never be printed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from rollout.errors import ConfigIssue
from rollout.redact import Redactor

FieldPath = tuple[str | int, ...]

# `$${` is a literal `${`; `${NAME}` a reference; any other `${` is a mistake worth reporting.
_REFERENCE = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$\{")


@dataclass
class _Expansion:
    text: str
    resolved: dict[str, str] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    malformed: bool = False


def _expand(text: str, environ: Mapping[str, str]) -> _Expansion:
    result = _Expansion(text)

    def replace(match: re.Match[str]) -> str:
        name = match[1]
        if match[0] == "$${":
            return "${"
        if name is None:
            result.malformed = True
        elif name in environ:
            result.resolved[name] = environ[name]
            return environ[name]
        else:
            result.missing.append(name)
        return ""

    result.text = _REFERENCE.sub(replace, text)
    return result


@dataclass
class Document:
    """rollout.yml as plain data, the line of every key and list item, and what was wrong."""

    file: str
    data: Any = None
    lines: dict[FieldPath, int] = field(default_factory=dict)
    issues: list[ConfigIssue] = field(default_factory=list)
    missing_vars: list[str] = field(default_factory=list)
    # Fields already reported (a failed ${VAR}, an unknown tag): pydantic's complaint about
    # the blank left there would be noise.
    unresolved: set[FieldPath] = field(default_factory=set)

    def issue(self, path: FieldPath, line: int | None, message: str) -> None:
        self.issues.append(ConfigIssue(self.file, line, dotted(path), message))

    def line_of(self, path: FieldPath) -> int | None:
        """The line of a field, or of its nearest ancestor when the field is not in the file."""
        for end in range(len(path), -1, -1):
            if path[:end] in self.lines:
                return self.lines[path[:end]]
        return None


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


class _Reader:
    """Walks composed YAML nodes into plain data, resolving ``${VAR}`` in strings."""

    def __init__(
        self, text: str, doc: Document, environ: Mapping[str, str], redactor: Redactor
    ) -> None:
        # One loader both composes the nodes and, later, builds each scalar's Python value.
        self.loader = yaml.SafeLoader(text)
        self.doc = doc
        self.environ = environ
        self.redactor = redactor
        self.active: set[int] = set()  # node ids on the current path, to stop alias cycles

    def read(self) -> bool:
        """Fill the document; False when the YAML itself cannot be parsed."""
        try:
            root = self.loader.get_single_node()  # what yaml.compose does, keeping the loader
            if root is not None:
                self.doc.lines[()] = _line(root)
            self.doc.data = {} if root is None else self.node(root, ())
        except yaml.MarkedYAMLError as exc:
            self._syntax_error(exc)
            return False
        except yaml.YAMLError as exc:
            self.doc.issue((), None, f"invalid YAML: {exc}")
            return False
        finally:
            self.loader.dispose()
        return True

    def _syntax_error(self, exc: yaml.MarkedYAMLError) -> None:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "not valid YAML"
        self.doc.issue((), None if mark is None else mark.line + 1, f"invalid YAML: {problem}")

    def node(self, node: yaml.Node, path: FieldPath) -> Any:
        if id(node) in self.active:
            self.doc.issue(path, _line(node), "an alias refers to a mapping or list containing it")
            return None
        self.active.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode):
                return self.mapping(node, path)
            if isinstance(node, yaml.SequenceNode):
                return self.sequence(node, path)
            return self.scalar(node, path)
        finally:
            self.active.discard(id(node))

    def mapping(self, node: yaml.MappingNode, path: FieldPath) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                self.doc.issue(path, _line(key_node), "keys must be plain names")
                continue
            # The key as written: `on:` or `1h:` are names here, never booleans or numbers.
            key = str(key_node.value)
            if key in result:
                first = self.doc.lines[(*path, key)]
                message = f"duplicate key (first on line {first})"
                self.doc.issue((*path, key), _line(key_node), message)
                continue
            self.doc.lines[(*path, key)] = _line(key_node)
            result[key] = self.node(value_node, (*path, key))
        return result

    def sequence(self, node: yaml.SequenceNode, path: FieldPath) -> list[Any]:
        items = []
        for index, item in enumerate(node.value):
            self.doc.lines[(*path, index)] = _line(item)
            items.append(self.node(item, (*path, index)))
        return items

    def scalar(self, node: yaml.Node, path: FieldPath) -> Any:
        try:
            value = self.loader.construct_object(node, deep=True)
        except yaml.MarkedYAMLError as exc:  # an unknown tag such as `!env`
            self.doc.issue(path, _line(node), f"cannot read this value: {exc.problem}")
            self.doc.unresolved.add(path)
            return None
        return self.resolve(value, path, _line(node)) if isinstance(value, str) else value

    def resolve(self, value: str, path: FieldPath, line: int) -> str:
        expansion = _expand(value, self.environ)
        for name, secret in expansion.resolved.items():
            self.redactor.add(name, secret)
        for name in expansion.missing:
            self.doc.issue(path, line, f"environment variable {name} is not set")
            self.doc.missing_vars.append(name)
        if expansion.malformed:
            self.doc.issue(path, line, "malformed ${...}: write ${NAME}, or $${ for a literal ${")
        if expansion.missing or expansion.malformed:
            self.doc.unresolved.add(path)
        return expansion.text


def read_document(text: str, doc: Document, environ: Mapping[str, str], redactor: Redactor) -> bool:
    """Fill ``doc`` from ``text``; False when the YAML itself cannot be parsed."""
    return _Reader(text, doc, environ, redactor).read()


def dotted(path: FieldPath) -> str:
    """``("environments", "production", "hosts", 0)`` -> ``environments.production.hosts[0]``."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text
