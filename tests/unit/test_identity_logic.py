"""Pure identity rules: implied roles, tag filters."""

from pocketstack.identity import service


def test_implied_roles_expand_transitively_and_survive_cycles() -> None:
    graph = {"admin": {"member"}, "member": {"reader"}, "reader": {"admin"}}
    assert service.expand_implied(graph, ["member"]) == {"admin", "member", "reader"}
    assert service.expand_implied({"admin": {"member"}}, ["reader"]) == {"reader"}


def test_tag_filters_combine_like_keystones() -> None:
    tags = ["a", "b"]
    assert service.TagFilter(all_of=("a", "b")).matches(tags)
    assert not service.TagFilter(all_of=("a", "c")).matches(tags)
    assert service.TagFilter(any_of=("c", "b")).matches(tags)
    assert not service.TagFilter(not_all_of=("a", "b")).matches(tags)
    assert service.TagFilter(not_all_of=("a", "c")).matches(tags)
    assert not service.TagFilter(not_any_of=("c", "a")).matches(tags)
    assert service.TagFilter().empty
