from deeprecipe.pipeline.versioning import canonical_json, version_key


def test_canonical_json_ignores_key_order_and_int_floats():
    assert canonical_json({"b": 1.0, "a": [1, 2]}) == canonical_json({"a": (1, 2), "b": 1})
    assert canonical_json({"a": 0.5}) != canonical_json({"a": 0.25})


def test_version_key_changes_with_each_part():
    base = version_key("s", "1", {"p": 1}, {"up": "aaaa"})
    assert len(base["version"]) == 16 and base["digest"].startswith(base["version"])
    assert version_key("s", "1", {"p": 1}, {"up": "aaaa"})["version"] == base["version"]
    variants = [version_key("t", "1", {"p": 1}, {"up": "aaaa"}),
                version_key("s", "2", {"p": 1}, {"up": "aaaa"}),
                version_key("s", "1", {"p": 2}, {"up": "aaaa"}),
                version_key("s", "1", {"p": 1}, {"up": "bbbb"}),
                version_key("s", "1", {"p": 1}, {"up": "aaaa"}, salt="rerun-x")]
    assert len({v["version"] for v in variants} | {base["version"]}) == 6


def test_unhashable_parameter_is_refused():
    import pytest
    with pytest.raises(TypeError):
        version_key("s", "1", {"p": object()}, {})
