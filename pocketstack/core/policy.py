"""RBAC: the upstream policy rule language, default rules, operator overrides.

Rules are written as OpenStack writes them (`role:admin or
project_id:%(target.project.id)s`), so an operator's existing policy YAML
means the same thing here. Each service registers its defaults; a YAML file
given with `--policy-file` overrides any of them by name.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

Check = Callable[[Mapping[str, Any], Mapping[str, Any], "Enforcer"], bool]


@dataclass(frozen=True, slots=True)
class Rule:
    """One named default rule, as a service registers it."""

    name: str
    check_str: str
    description: str = ""
    # Token scopes the operation is for ("project", "domain", "system"); empty means any.
    # A token of another scope is refused whatever the rule says, as oslo.policy does.
    scope_types: tuple[str, ...] = ()


class PolicySyntaxError(ValueError):
    """A rule string that the parser cannot read."""


_SUBST = re.compile(r"%\(([^)]+)\)s")


def _lookup(data: Mapping[str, Any], key: str) -> Any:
    """Find `key` in data, either as a literal key or as a dotted path."""
    if key in data:
        return data[key]
    node: Any = data
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            raise KeyError(key)
        node = node[part]
    return node


def _resolve(text: str, target: Mapping[str, Any]) -> str:
    return _SUBST.sub(lambda m: str(_lookup(target, m.group(1))), text)


def _literal(text: str) -> str | None:
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    return None


def _always(_t: Mapping[str, Any], _c: Mapping[str, Any], _e: Enforcer) -> bool:
    return True


def _never(_t: Mapping[str, Any], _c: Mapping[str, Any], _e: Enforcer) -> bool:
    return False


def _leaf(token: str) -> Check:
    if token == "@":
        return _always
    if token == "!":
        return _never
    kind, sep, match = token.partition(":")
    if not sep:
        raise PolicySyntaxError(f"expected 'kind:match', got {token!r}")
    if kind == "rule":
        return lambda t, c, e: e.check(match, t, c)
    if kind == "role":
        wanted = match.lower()

        def role_check(t: Mapping[str, Any], c: Mapping[str, Any], _e: Enforcer) -> bool:
            try:
                role = _resolve(wanted, t).lower()
            except KeyError:
                return False
            return role in [r.lower() for r in c.get("roles", ())]

        return role_check

    def generic_check(t: Mapping[str, Any], c: Mapping[str, Any], _e: Enforcer) -> bool:
        try:
            right = _literal(match)
            if right is None:
                right = _resolve(match, t)
            left = _literal(kind)
            left_value: Any = left if left is not None else _lookup(c, kind)
        except KeyError:
            return False
        if isinstance(left_value, bool):
            return str(left_value).lower() == right.lower()
        if isinstance(left_value, (list, tuple, set, frozenset)):
            return right in [str(v) for v in left_value]
        return left_value is not None and str(left_value) == right

    return generic_check


def _tokenize(text: str) -> list[str]:
    """Whitespace-separated words with parentheses peeled off their ends, so that the
    parentheses inside `%(target.id)s` stay part of their word."""
    tokens: list[str] = []
    for word in text.split():
        opening = len(word) - len(word.lstrip("("))
        tokens.extend("(" * opening)
        word = word[opening:]
        closing = 0
        while word.endswith(")") and _SUBST.sub("", word).endswith(")"):
            word = word[:-1]
            closing += 1
        if word:
            tokens.append(word)
        tokens.extend(")" * closing)
    return tokens


class _Parser:
    """Recursive descent over: expr := term ('or' term)*; term := factor ('and' factor)*."""

    def __init__(self, text: str) -> None:
        self.tokens = _tokenize(text)
        self.pos = 0

    def parse(self) -> Check:
        if not self.tokens:
            return _always
        check = self._expr()
        if self.pos != len(self.tokens):
            raise PolicySyntaxError(f"unexpected {self.tokens[self.pos]!r}")
        return check

    def _peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def _take(self) -> str:
        token = self._peek()
        if token is None:
            raise PolicySyntaxError("rule ends too early")
        self.pos += 1
        return token

    def _expr(self) -> Check:
        parts = [self._term()]
        while self._peek() == "or":
            self._take()
            parts.append(self._term())
        if len(parts) == 1:
            return parts[0]
        return lambda t, c, e: any(p(t, c, e) for p in parts)

    def _term(self) -> Check:
        parts = [self._factor()]
        while self._peek() == "and":
            self._take()
            parts.append(self._factor())
        if len(parts) == 1:
            return parts[0]
        return lambda t, c, e: all(p(t, c, e) for p in parts)

    def _factor(self) -> Check:
        token = self._take()
        if token == "not":
            inner = self._factor()
            return lambda t, c, e: not inner(t, c, e)
        if token == "(":
            inner = self._expr()
            if self._take() != ")":
                raise PolicySyntaxError("missing ')'")
            return inner
        if token in (")", "and", "or"):
            raise PolicySyntaxError(f"unexpected {token!r}")
        return _leaf(token)


def parse_rule(text: str) -> Check:
    """Compile a rule string into a check; raises PolicySyntaxError."""
    return _Parser(text).parse()


def token_scope(creds: Mapping[str, Any]) -> str | None:
    if creds.get("system_scope") == "all":
        return "system"
    if creds.get("project_id"):
        return "project"
    if creds.get("domain_id"):
        return "domain"
    return None


class Enforcer:
    """Holds the compiled rules: service defaults, overridden by the operator's file."""

    def __init__(self, policy_file: Path | None = None) -> None:
        self._defaults: dict[str, Rule] = {}
        self._rules: dict[str, Check] = {}
        self._overrides: dict[str, str] = {}
        self.policy_file = policy_file
        if policy_file is not None:
            self._overrides = self._read_overrides(policy_file)
            for name, text in self._overrides.items():
                self._rules[name] = parse_rule(text)

    @staticmethod
    def _read_overrides(path: Path) -> dict[str, str]:
        data = yaml.safe_load(path.read_text()) or {}
        if not isinstance(data, dict):
            raise PolicySyntaxError(f"{path}: expected a mapping of rule name to rule")
        return {str(k): str(v) for k, v in data.items()}

    def register(self, rules: Iterable[Rule]) -> None:
        """Add a service's defaults; an operator override of the same name wins."""
        for rule in rules:
            self._defaults[rule.name] = rule
            if rule.name not in self._overrides:
                self._rules[rule.name] = parse_rule(rule.check_str)

    def defaults(self) -> list[Rule]:
        return list(self._defaults.values())

    def check(self, name: str, target: Mapping[str, Any], creds: Mapping[str, Any]) -> bool:
        """True when rule `name` allows `creds` on `target`; unknown rules deny."""
        rule = self._rules.get(name)
        default = self._defaults.get(name)
        if (
            default is not None
            and default.scope_types
            and (token_scope(creds) not in default.scope_types)
        ):
            return False
        return rule is not None and rule(target, creds, self)
