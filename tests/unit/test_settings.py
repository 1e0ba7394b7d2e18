"""The settings registry: every documented form parses, garbage is refused with a clear message."""

from __future__ import annotations

import math

import pytest

from ollamactl import settings
from ollamactl.errors import EXIT_USAGE, SettingError, UnknownSetting, UsageError
from ollamactl.host import HostFacts
from ollamactl.settings import FOREVER, HostAddress


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0.0.0.0", HostAddress("http", "0.0.0.0", 11434)),
        (":8080", HostAddress("http", "", 8080)),
        ("example.com", HostAddress("http", "example.com", 11434)),
        ("http://[::1]:1234", HostAddress("http", "::1", 1234)),
        ("https://host", HostAddress("https", "host", 443)),
        ("http://host", HostAddress("http", "host", 80)),
        ("127.0.0.1:11434", HostAddress("http", "127.0.0.1", 11434)),
        ("  '0.0.0.0:11435'  ", HostAddress("http", "0.0.0.0", 11435)),
        ("::1", HostAddress("http", "::1", 11434)),
        ("[::]:9000", HostAddress("http", "::", 9000)),
        ("http://localhost:11434/prefix", HostAddress("http", "localhost", 11434, "prefix")),
    ],
)
def test_ollama_host_forms(value: str, expected: HostAddress) -> None:
    assert settings.lookup("OLLAMA_HOST").validate(value) == expected


def test_host_address_views() -> None:
    parsed = settings.parse_host(":8080")
    assert parsed.hostport == ":8080"
    assert parsed.bind_host == "0.0.0.0"
    assert parsed.client_url == "http://127.0.0.1:8080"
    assert parsed.is_all_interfaces and not parsed.is_loopback
    v6 = settings.parse_host("http://[::1]:1234")
    assert v6.hostport == "[::1]:1234" and v6.is_loopback
    assert settings.parse_host("[::]").client_url == "http://[::1]:11434"


BAD_HOSTS = ["", "   ", "ftp://host", "host:port", "host:99999", "host:0", "http://",
             "[::1", "[::1]x", "bad host", "exa mple.com", "-host-", "host:-1", "1.2.3.4.5"]


@pytest.mark.parametrize("value", BAD_HOSTS)
def test_ollama_host_refuses(value: str) -> None:
    with pytest.raises(SettingError) as info:
        settings.lookup("OLLAMA_HOST").validate(value)
    message = str(info.value)
    assert "OLLAMA_HOST" in message and repr(value) in message
    assert info.value.hint is not None and "0.0.0.0" in info.value.hint
    assert info.value.exit_code == EXIT_USAGE


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("5m", 300.0), ("1h30m", 5400.0), ("3600", 3600.0), ("-1", FOREVER), ("0", 0.0),
     ("-1m", FOREVER), ("24h", 86400.0), ("1.5h", 5400.0), ("250ms", 0.25), ('"10m"', 600.0),
     ("2h45m30s", 9930.0), ("0.5", 0.5)],
)
def test_keep_alive_forms(value: str, seconds: float) -> None:
    assert settings.lookup("OLLAMA_KEEP_ALIVE").validate(value) == seconds


BAD_DURATIONS = ["", "5 minutes", "5min", "m5", "1h30", "abc", "5d", "nan", "inf", "--5m",
                 "5m-", "1e3x", "h", "1.2.3s"]


@pytest.mark.parametrize("value", BAD_DURATIONS)
def test_keep_alive_refuses(value: str) -> None:
    with pytest.raises(SettingError) as info:
        settings.lookup("OLLAMA_KEEP_ALIVE").validate(value)
    assert "OLLAMA_KEEP_ALIVE" in str(info.value) and repr(value) in str(info.value)
    assert info.value.hint is not None and "1h30m" in info.value.hint


@pytest.mark.parametrize(("value", "expected"),
                         [("1", True), ("true", True), ("T", True), ("0", False),
                          ("false", False), ("FALSE", False)])
def test_bool_forms(value: str, expected: bool) -> None:
    assert settings.lookup("OLLAMA_NOPRUNE").validate(value) is expected


BAD_BOOLS = ["yes-please", "yes", "no", "on", "off", "2", "-1", "enabled", "truee", "", "y",
             "nope"]


@pytest.mark.parametrize("value", BAD_BOOLS)
def test_bool_refuses_what_ollama_reads_as_true(value: str) -> None:
    with pytest.raises(SettingError) as info:
        settings.lookup("OLLAMA_FLASH_ATTENTION").validate(value)
    assert "OLLAMA_FLASH_ATTENTION" in str(info.value)
    assert info.value.hint == "OLLAMA_FLASH_ATTENTION accepts 1, 0, true, false " \
                              "(t/f and TRUE/FALSE too)"


BAD_BY_SETTING = {
    "OLLAMA_MAX_QUEUE": ["0", "-3", "abc", "1.5", "", "1e3", "10 000", "0x10", "2000000", "∞"],
    "OLLAMA_NUM_PARALLEL": ["0", "-1", "four", "300", "1.0", "", "+1", "1 2", "none", "0x1"],
    "OLLAMA_MODELS": ["relative/path", "~/models", "", "models", "./x", "../y", "a\0b",
                      "x\ny", "~", "C:relative"],
    "OLLAMA_ORIGINS": ["localhost:3000", "example.com", ",", "http://a b", "://x", "foo",
                       "*.example.com", "http://ok,bad", "1.2.3.4", "chrome-extension"],
    "CUDA_VISIBLE_DEVICES": ["", "0,,1", "gpu0", "GPU", "0;1", "a", "1.5", "UUID-123",
                             "0, x", "GPU-"],
    "HSA_OVERRIDE_GFX_VERSION": ["gfx1030", "10.3", "10.3.0.0", "10.16.0", "5.0.0", "abc",
                                 "", "10.3.x", "16.0.0", "10.3.16"],
    "HTTPS_PROXY": ["proxy:3128", "ftp://proxy", "http://", "http://pro xy", "", "//proxy",
                    "http://proxy:99999", "proxy", "socks4://p:1", "http:/proxy"],
    "OLLAMA_KV_CACHE_TYPE": ["q4", "f32", "", "Q8_0", "q8", "fp16", "bf16", "q5_0", "8", "auto"],
}


@pytest.mark.parametrize(("name", "value"),
                         [(n, v) for n, values in BAD_BY_SETTING.items() for v in values])
def test_each_parser_refuses_garbage(name: str, value: str) -> None:
    setting = settings.lookup(name)
    with pytest.raises(SettingError) as info:
        setting.validate(value)
    assert name in str(info.value)
    assert repr(value) in str(info.value)
    assert info.value.hint == f"{name} accepts {setting.accepted}"


def test_each_bad_list_has_at_least_ten_values() -> None:
    assert all(len(set(values)) >= 10 for values in BAD_BY_SETTING.values())


def test_gfx_override_suggests_the_dotted_form() -> None:
    with pytest.raises(SettingError, match=r"write 10\.3\.0"):
        settings.lookup("HSA_OVERRIDE_GFX_VERSION").validate("gfx1030")
    assert settings.parse_gfx_override("10.3.0") == (10, 3, 0)


def test_cuda_devices_forms() -> None:
    parse = settings.parse_cuda_devices
    assert parse("0,1") == ("0", "1")
    assert parse("-1") == ("-1",)
    assert parse("GPU-8932f937-d72c-4106-c12f-20bd9faed9f6") == (
        "GPU-8932f937-d72c-4106-c12f-20bd9faed9f6",)
    assert parse("MIG-GPU-8932f937/1/0") == ("MIG-GPU-8932f937/1/0",)


def test_unknown_setting_suggests() -> None:
    with pytest.raises(UnknownSetting) as info:
        settings.lookup("OLLAMA_HSOT")
    assert info.value.suggestions[0] == "OLLAMA_HOST"
    assert info.value.hint is not None and "OLLAMA_HOST" in info.value.hint
    with pytest.raises(UnknownSetting) as lower:
        settings.lookup("ollama_host")
    assert lower.value.suggestions == ("OLLAMA_HOST",)


def test_registry_covers_the_reference_settings() -> None:
    required = [
        "OLLAMA_HOST", "OLLAMA_ORIGINS", "OLLAMA_MODELS", "OLLAMA_KEEP_ALIVE",
        "OLLAMA_MAX_QUEUE", "OLLAMA_NUM_PARALLEL", "OLLAMA_MAX_LOADED_MODELS",
        "OLLAMA_CONTEXT_LENGTH", "OLLAMA_DEBUG", "OLLAMA_FLASH_ATTENTION", "OLLAMA_NOPRUNE",
        "OLLAMA_SCHED_SPREAD", "OLLAMA_GPU_OVERHEAD", "OLLAMA_LOAD_TIMEOUT", "OLLAMA_TMPDIR",
        "CUDA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES",
        "HSA_OVERRIDE_GFX_VERSION", "HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY",
        "OLLAMA_KV_CACHE_TYPE", "OLLAMA_LLM_LIBRARY", "OLLAMA_IGPU_ENABLE",
    ]
    missing = [n for n in required if n not in settings.SETTINGS]
    assert missing == []
    for setting in settings.SETTINGS.values():
        assert setting.doc and setting.accepted and setting.kind


#: A line end for some reader of a settings file, or a character no such file can hold.
UNSTORABLE = ["\r", "\n", "\t", "\0", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x1f", "\x7f",
              "\x85", "\x9b", "\u2028", "\u2029", "\udc80", "\ufdd0", "\ufffe", "\U0010ffff"]


@pytest.mark.parametrize("char", UNSTORABLE)
def test_no_setting_stores_a_line_end_or_control_character(char: str) -> None:
    for name, setting in settings.SETTINGS.items():
        with pytest.raises(SettingError) as info:
            setting.validate(f"1{char}ExecStartPre=+/bin/sh")
        assert f"U+{ord(char):04X}" in info.value.reason, name
        assert "\n" not in str(info.value)
    # a trailing one that the parser would have trimmed away is refused all the same
    with pytest.raises(SettingError):
        settings.lookup("OLLAMA_FLASH_ATTENTION").validate(f"1{char}")


def test_the_rule_keeps_ordinary_text() -> None:
    for value in ("a b", "\u00a0\u3000", "50% %%", "\"'\\", "\u00e9\u4e2d\U0001f600", "a\u200db",
                  "\u202eltr", "=;#[]", "\ufffd", "\ue000"):
        settings.check_storable(value)


def test_a_path_granted_in_a_systemd_path_list_has_no_list_syntax() -> None:
    settings.check_path_list_word("/srv/50%h/models-1.0_x@y+z,w")
    for value in ("/srv/models /", "/a\u00a0b", "/a\u3000b", '/a"b', "/a'b", "/a\\", "/a:b"):
        with pytest.raises(settings.Invalid, match="ReadWritePaths"):
            settings.check_path_list_word(value)
    with pytest.raises(SettingError, match="OLLAMA_MODELS"):
        settings.require_path_list_word("OLLAMA_MODELS", "/srv/models /")


def test_stores_refuse_names_that_are_not_identifiers() -> None:
    for name in ("", "A=B", "A B", "1A", "A\nB", "A\u2028B"):
        with pytest.raises(UsageError, match="cannot store a setting named"):
            settings.require_storable(name, "1")
    settings.require_storable("MY_OWN_1", "1")


def test_every_default_is_valid(linux_host: HostFacts) -> None:
    for setting in settings.SETTINGS.values():
        default = setting.default_for(linux_host)
        if default:
            setting.validate(default)


def test_models_default_per_os(linux_host: HostFacts) -> None:
    models = settings.lookup("OLLAMA_MODELS")
    assert models.default_for(linux_host, service=True) == "/usr/share/ollama/.ollama/models"
    assert models.default_for(linux_host, service=False).endswith("/.ollama/models")


def test_server_reads_leniently_with_warnings(linux_host: HostFacts,
                                              caplog: pytest.LogCaptureFixture) -> None:
    env = {"OLLAMA_HOST": "0.0.0.0:notaport", "OLLAMA_NOPRUNE": "yes-please",
           "OLLAMA_MAX_QUEUE": "lots", "OLLAMA_KEEP_ALIVE": "-1", "OLLAMA_NUM_PARALLEL": "2"}
    config = settings.load_server_config(env, linux_host)
    assert config.host == HostAddress("http", "0.0.0.0", 11434)
    assert config.noprune is True          # Ollama's reading of garbage booleans
    assert config.max_queue == 512         # back to the default
    assert math.isinf(config.keep_alive_s)
    assert config.num_parallel == 2
    assert config.context_length == 0      # unset: the server takes its GPUs' VRAM tier
    warned = " ".join(r.getMessage() for r in caplog.records)
    assert "OLLAMA_HOST" in warned and "OLLAMA_NOPRUNE" in warned and "OLLAMA_MAX_QUEUE" in warned


def test_host_from_environment() -> None:
    assert settings.host_from({}) == HostAddress("http", "127.0.0.1", 11434)
    assert settings.host_from({"OLLAMA_HOST": "  "}) == HostAddress("http", "127.0.0.1", 11434)
    assert settings.host_from({"OLLAMA_HOST": ":8080"}).client_url == "http://127.0.0.1:8080"
    assert settings.host_from({"OLLAMA_HOST": "0.0.0.0:bad"}) == HostAddress("http", "0.0.0.0",
                                                                              11434)
