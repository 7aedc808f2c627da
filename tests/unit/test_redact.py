from rollout.redact import Redactor


def test_every_occurrence_of_a_secret_is_replaced_by_its_name() -> None:
    redactor = Redactor({"DB_PASSWORD": "hunter2"})

    text = redactor.redact("login hunter2 failed; retry with hunter2")

    assert text == "login [secret:DB_PASSWORD] failed; retry with [secret:DB_PASSWORD]"


def test_a_secret_containing_another_is_replaced_whole() -> None:
    redactor = Redactor({"TOKEN": "abc", "URL": "https://u:abc@db/x"})

    assert redactor.redact("connect https://u:abc@db/x with abc") == (
        "connect [secret:URL] with [secret:TOKEN]"
    )


def test_a_marker_is_never_redacted_again() -> None:
    redactor = Redactor({"A": "secret", "B": "ecre"})

    assert redactor.redact("secret") == "[secret:A]"


def test_strings_inside_dicts_lists_and_tuples_are_redacted() -> None:
    redactor = Redactor({"KEY": "s3cr3t"})
    obj = {"url": "x://s3cr3t@h", "args": ["s3cr3t", ("s3cr3t", 3)], "s3cr3t": None, "n": 1}

    assert redactor.redact_obj(obj) == {
        "url": "x://[secret:KEY]@h",
        "args": ["[secret:KEY]", ("[secret:KEY]", 3)],
        "[secret:KEY]": None,
        "n": 1,
    }


def test_an_empty_secret_is_ignored() -> None:
    redactor = Redactor({"EMPTY": ""})
    redactor.add("ALSO_EMPTY", "")

    assert redactor.redact("nothing to hide") == "nothing to hide"
    assert redactor.names == ()


def test_added_secrets_are_redacted_and_named() -> None:
    redactor = Redactor.empty()
    redactor.add("B_TOKEN", "bbb")
    redactor.add("A_TOKEN", "aaa")

    assert redactor.redact("aaa bbb") == "[secret:A_TOKEN] [secret:B_TOKEN]"
    assert redactor.names == ("A_TOKEN", "B_TOKEN")


def test_an_empty_redactor_returns_text_unchanged() -> None:
    assert Redactor.empty().redact("a [b] c") == "a [b] c"


def test_the_repr_shows_names_not_values() -> None:
    assert "hunter2" not in repr(Redactor({"PW": "hunter2"}))
