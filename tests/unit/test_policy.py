"""The policy language reads like upstream's and decides like it."""

from pathlib import Path

import pytest

from pocketstack.core import policy


def check(rule: str, creds: dict, target: dict | None = None) -> bool:
    enforcer = policy.Enforcer()
    enforcer.register([policy.Rule("r", rule), policy.Rule("admin_required", "role:admin")])
    return enforcer.check("r", target or {}, creds)


def test_roles_are_case_insensitive() -> None:
    assert check("role:Admin", {"roles": ["admin"]})
    assert not check("role:admin", {"roles": ["member"]})


def test_and_binds_tighter_than_or() -> None:
    rule = "role:a or role:b and role:c"
    assert check(rule, {"roles": ["a"]})
    assert not check(rule, {"roles": ["b"]})
    assert check(rule, {"roles": ["b", "c"]})


def test_parentheses_and_not() -> None:
    rule = "not (role:a or role:b)"
    assert check(rule, {"roles": ["c"]})
    assert not check(rule, {"roles": ["b"]})


def test_target_substitution_with_dotted_keys() -> None:
    rule = "project_id:%(target.project.id)s"
    creds = {"project_id": "p1", "roles": []}
    assert check(rule, creds, {"target": {"project": {"id": "p1"}}})
    assert not check(rule, creds, {"target": {"project": {"id": "p2"}}})
    assert not check(rule, creds, {})


def test_parenthesis_right_after_a_substitution() -> None:
    rule = "(role:reader and domain_id:%(target.domain_id)s)"
    assert check(rule, {"roles": ["reader"], "domain_id": "d"}, {"target": {"domain_id": "d"}})


def test_rule_references_and_constants() -> None:
    assert check("rule:admin_required", {"roles": ["admin"]})
    assert not check("rule:missing", {"roles": ["admin"]})
    assert check("@", {})
    assert not check("!", {"roles": ["admin"]})
    assert check("", {})
    assert check("system_scope:all", {"system_scope": "all"})
    assert check("is_admin:True", {"is_admin": True})
    assert check("'member':%(role)s", {}, {"role": "member"})


@pytest.mark.parametrize(
    "broken", ["role:a or", "(role:a", "role:a )", "and role:a", "noseparator"]
)
def test_syntax_errors_are_reported(broken: str) -> None:
    with pytest.raises(policy.PolicySyntaxError):
        policy.parse_rule(broken)


def test_operator_file_overrides_defaults(tmp_path: Path) -> None:
    override = tmp_path / "policy.yaml"
    override.write_text('"identity:list_projects": "role:auditor"\n')
    enforcer = policy.Enforcer(override)
    enforcer.register([policy.Rule("identity:list_projects", "role:admin")])
    assert enforcer.check("identity:list_projects", {}, {"roles": ["auditor"]})
    assert not enforcer.check("identity:list_projects", {}, {"roles": ["admin"]})


def test_scope_types_refuse_tokens_of_other_scopes() -> None:
    enforcer = policy.Enforcer()
    enforcer.register([policy.Rule("r", "role:admin", scope_types=("project",))])
    assert enforcer.check("r", {}, {"roles": ["admin"], "project_id": "p"})
    assert not enforcer.check("r", {}, {"roles": ["admin"], "system_scope": "all"})
    assert not enforcer.check("r", {}, {"roles": ["admin"], "domain_id": "d"})
