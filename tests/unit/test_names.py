"""Model names: Ollama's grammar, defaults, display form, and rejection of path tricks."""

from __future__ import annotations

import pytest

from ollamactl.runtime.store.names import InvalidModelName, ModelName


@pytest.mark.parametrize(("text", "parts", "display"), [
    ("smollm2:135m", ("registry.ollama.ai", "library", "smollm2", "135m"), "smollm2:135m"),
    ("llama3.2", ("registry.ollama.ai", "library", "llama3.2", "latest"), "llama3.2:latest"),
    ("user/m:tag", ("registry.ollama.ai", "user", "m", "tag"), "user/m:tag"),
    ("host.example/ns/m:t", ("host.example", "ns", "m", "t"), "host.example/ns/m:t"),
    ("localhost:5000/ns/m", ("localhost:5000", "ns", "m", "latest"), "localhost:5000/ns/m:latest"),
    ("https://host/ns/m:v1", ("host", "ns", "m", "v1"), "host/ns/m:v1"),
    ("_under/m_2-x:Q4_K_M", ("registry.ollama.ai", "_under", "m_2-x", "Q4_K_M"),
     "_under/m_2-x:Q4_K_M"),
])
def test_parse_accepts_ollama_names(text: str, parts: tuple[str, ...], display: str) -> None:
    name = ModelName.parse(text)
    assert name.manifest_parts == parts
    assert name.display == display
    assert ModelName.parse(name.display) == name


@pytest.mark.parametrize("text", [
    "", ":", "m:", ":tag", "/m", "ns/", "a//b", "../etc/passwd", "ns/../m", "m/..", "..",
    "m:../x", "m:..", "a..b", "m\x00x", "m x", "m\\x", "ns.dot/m", "-m", ".m", "m:t:t2x/",
    "host/ns/m/extra", "ftp://host/ns/m", "m:tag/x", "mödel", "m" * 81, "m:" + "t" * 81,
    "h" * 351 + "/ns/m",
])
def test_parse_rejects_bad_names(text: str) -> None:
    with pytest.raises(InvalidModelName) as info:
        ModelName.parse(text)
    assert str(info.value) == "invalid model name"


def test_host_part_may_be_long_and_carry_a_port() -> None:
    host = "h" * 340 + ":8080"
    assert ModelName.parse(f"{host}/ns/m").host == host


def test_casefold_key_ignores_case_but_display_keeps_it() -> None:
    upper = ModelName.parse("User/Model:TAG")
    assert upper.casefold_key() == ModelName.parse("user/model:tag").casefold_key()
    assert upper.display == "User/Model:TAG"


def test_non_string_is_invalid() -> None:
    with pytest.raises(InvalidModelName):
        ModelName.parse(None)  # type: ignore[arg-type]
