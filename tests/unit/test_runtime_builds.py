"""The portable runtime's decisions with the CPU faked (its flags), never the logic: which CPU
variant serves, what a build carries, how the recipe patches and records itself, how the
self-test walks the variants, and what a runner's death by SIGILL is told."""

from __future__ import annotations

import base64
import hashlib
import json
import tomllib
import zipfile
from pathlib import Path
from typing import Any

import pytest

from ollamactl.runtime.builds import recipe, selftest, serving
from ollamactl.runtime.builds import variants as v

XEON_FLAGS = ("fpu sse sse2 ssse3 sse4_1 sse4_2 avx f16c fma avx2 bmi2 avx512f avx512cd "
              "avx512vl avx512dq avx512bw avx512vbmi avx512_vnni avx512_bf16 avx_vnni "
              "amx_tile amx_int8 amx_bf16 hypervisor")
CPUINFO = f"""processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Processor
flags\t\t: {XEON_FLAGS}

processor\t: 1
model name\t: Intel(R) Xeon(R) Processor
flags\t\t: {XEON_FLAGS}
"""


def cpu(flags: str, arch: str = "x86_64") -> v.CpuInfo:
    return v.CpuInfo(arch, "test CPU", frozenset(flags.split()))


XEON = v.parse_cpuinfo(CPUINFO, "x86_64")
NO_AVX2 = cpu("fpu sse sse2 sse4_1 sse4_2 avx f16c")
HASWELL = cpu("sse4_2 avx f16c fma avx2 bmi2")


def libraries(tmp_path: Path, *tags: str) -> dict[str, Path]:
    lib = tmp_path / "lib"
    lib.mkdir(exist_ok=True)
    for tag in tags:
        (lib / f"libggml-cpu-{tag}.so").write_bytes(tag.encode())
    return v.available(lib, "x86_64")


def test_cpuinfo_gives_the_flags_and_model_of_the_first_processor() -> None:
    assert XEON.model == "Intel(R) Xeon(R) Processor"
    assert {"avx512f", "amx_int8", "avx_vnni"} <= XEON.flags
    arm = v.parse_cpuinfo("processor\t: 0\nFeatures\t: fp asimd asimddp asimdhp sve i8mm\n"
                          "CPU part\t: 0xd40\n", "aarch64")
    assert arm.runs(v.by_name("cpu_sve_i8mm", "aarch64"))  # type: ignore[arg-type]
    assert not arm.runs(v.by_name("cpu_sve2_i8mm", "aarch64"))  # type: ignore[arg-type]


def test_a_cpu_without_avx2_gets_the_baseline(tmp_path: Path) -> None:
    present = libraries(tmp_path, "x64", "haswell", "zen4")
    choice = v.choose(NO_AVX2, present)
    assert choice.variant is not None and choice.variant.tag == "x64"
    assert choice.path == present["x64"]


def test_the_best_variant_the_cpu_runs_serves_and_amx_only_after_a_passing_probe(
        tmp_path: Path) -> None:
    present = libraries(tmp_path, "x64", "haswell", "zen4", "sapphirerapids")
    untested = v.choose(XEON, present)
    assert untested.name == "cpu_avx512_vbmi_vnni_bf16"
    assert "cpu_amx is not self-tested" in untested.reason
    failed = v.choose(XEON, present, verdicts={"sapphirerapids": False, "zen4": True})
    assert failed.name == "cpu_avx512_vbmi_vnni_bf16"
    assert "cpu_amx failed its self-test" in failed.reason
    proven = v.choose(XEON, present, verdicts={"sapphirerapids": True})
    assert proven.name == "cpu_amx"
    assert v.choose(HASWELL, present).name == "cpu_avx2"


def test_a_variant_that_failed_or_crashed_is_passed_over_for_the_next_safer(
        tmp_path: Path) -> None:
    present = libraries(tmp_path, "x64", "haswell", "zen4")
    assert v.choose(XEON, present, verdicts={"zen4": False}).name == "cpu_avx2"
    assert v.choose(XEON, present, avoid={"zen4", "haswell"}).name == "cpu"
    with pytest.raises(v.VariantError, match="crashed here"):
        v.choose(XEON, present, avoid={"zen4", "haswell", "x64"})


def test_ollama_llm_library_forces_a_variant_this_cpu_runs(tmp_path: Path) -> None:
    present = libraries(tmp_path, "x64", "haswell", "zen4", "sapphirerapids")
    forced = v.choose(XEON, present, requested="cpu_avx2")
    assert (forced.name, forced.reason) == ("cpu_avx2", "OLLAMA_LLM_LIBRARY")
    assert v.choose(XEON, present, requested="haswell").name == "cpu_avx2"   # ggml's tag too
    assert v.choose(XEON, present, requested="auto").name == "cpu_avx512_vbmi_vnni_bf16"
    with pytest.raises(v.VariantError, match="needs avx512"):
        v.choose(HASWELL, present, requested="cpu_avx512_vbmi_vnni_bf16")
    with pytest.raises(v.VariantError, match="not a CPU library of this runtime"):
        v.choose(XEON, present, requested="cpu_avx512_vnni")       # cascadelake: not built
    with pytest.raises(v.VariantError, match="has not passed the self-test"):
        v.choose(XEON, present, requested="cpu_amx")


def test_a_build_without_variants_uses_its_built_in_cpu_code() -> None:
    choice = v.choose(XEON, {})
    assert choice.variant is None and choice.path is None
    assert "built into the runtime" in choice.describe()


def test_a_build_carries_the_baseline_avx2_and_the_best_this_cpu_runs() -> None:
    assert [x.tag for x in v.wanted_for_build(XEON)] == ["x64", "haswell", "zen4",
                                                          "sapphirerapids"]
    assert [x.tag for x in v.wanted_for_build(HASWELL)] == ["x64", "haswell"]
    assert [x.tag for x in v.wanted_for_build(NO_AVX2)] == ["x64", "ivybridge"]
    assert len(v.wanted_for_build(XEON, everything=True)) == 14
    arm = cpu("fp asimd asimddp asimdhp", "aarch64")
    assert [x.tag for x in v.wanted_for_build(arm)] == ["armv8.0_1", "armv8.2_1", "armv8.2_2"]


CMAKE_SNIPPET = """    if (GGML_SYSTEM_ARCH STREQUAL "x86")
        ggml_add_cpu_backend_variant(x64)
        ggml_add_cpu_backend_variant(sse42              SSE42)
        ggml_add_cpu_backend_variant(haswell            SSE42 AVX F16C FMA AVX2 BMI2)
        ggml_add_cpu_backend_variant(zen4           SSE42 AVX F16C FMA AVX2 BMI2 AVX512)
    elseif(GGML_SYSTEM_ARCH STREQUAL "ARM")
            ggml_add_cpu_backend_variant(armv8.0_1)
"""


def test_the_variant_patch_keeps_only_the_chosen_variants(tmp_path: Path) -> None:
    lists = tmp_path / "CMakeLists.txt"
    lists.write_text(CMAKE_SNIPPET)
    recipe.patch_variant_list(lists, ["x64", "haswell"], "x86_64")
    active = [ln.strip().split("(")[1].split()[0].rstrip(")") for ln in
              lists.read_text().split("\n") if ln.strip().startswith("ggml_add_cpu")]
    assert active == ["x64", "haswell", "armv8.0_1"]      # other arches are left alone
    assert "# ollamactl: not built here: ggml_add_cpu_backend_variant(zen4" in lists.read_text()
    lists.write_text(CMAKE_SNIPPET)
    with pytest.raises(RuntimeError, match="no CPU variant icelake"):
        recipe.patch_variant_list(lists, ["x64", "icelake"], "x86_64")


def test_the_recipe_key_changes_with_anything_that_shapes_the_build() -> None:
    base = recipe.recipe_for(XEON, everything=False)
    assert "-DGGML_NATIVE=OFF" in base.cmake_args
    assert not any("native" in arg.lower() and "OFF" not in arg for arg in base.cmake_args)
    assert recipe.recipe_for(XEON, everything=True).key != base.key
    assert recipe.recipe_for(HASWELL, everything=False).key != base.key
    assert recipe.recipe_for(XEON, everything=False).key == base.key


def test_the_recipe_builds_the_version_pyproject_pins() -> None:
    project = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    pins = project["project"]["optional-dependencies"]["runtime"]
    assert f"llama-cpp-python=={recipe.LLAMA_CPP_PYTHON}" in pins


def test_the_record_added_to_a_wheel_is_listed_in_its_record_with_its_hash(
        tmp_path: Path) -> None:
    wheel = tmp_path / "demo-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("demo/__init__.py", "")
        archive.writestr("demo-1.0.dist-info/RECORD",
                         "demo/__init__.py,sha256=x,0\ndemo-1.0.dist-info/RECORD,,\n")
    data = json.dumps({"key": "abc"}).encode()
    recipe.add_to_wheel(wheel, "demo/lib/ollamactl-build.json", data)
    with zipfile.ZipFile(wheel) as archive:
        assert archive.read("demo/lib/ollamactl-build.json") == data
        lines = archive.read("demo-1.0.dist-info/RECORD").decode().split("\n")
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    assert f"demo/lib/ollamactl-build.json,sha256={digest},{len(data)}" in lines
    assert lines[-2] == "demo-1.0.dist-info/RECORD,,"     # RECORD's own line stays last


class FakeRunner:
    """The self-test's subprocess boundary: outcomes by library file name."""

    def __init__(self, outcomes: dict[str, dict[str, Any]]) -> None:
        self.outcomes = outcomes
        self.calls: list[str] = []

    def __call__(self, library: str, model: str) -> dict[str, Any]:
        name = Path(library).name
        self.calls.append(name)
        return dict(self.outcomes[name])


@pytest.fixture
def bundled(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    model = tmp_path / "model.gguf"
    model.write_bytes(b"GGUF")
    monkeypatch.setattr(selftest, "bundled_model_path", lambda: str(model))
    return model


def test_the_self_test_crash_picks_the_next_safer_variant_and_is_remembered(
        tmp_path: Path, bundled: Path) -> None:
    present = libraries(tmp_path, "x64", "haswell", "zen4", "sapphirerapids")
    lib_dir = present["x64"].parent
    run = FakeRunner({
        "libggml-cpu-sapphirerapids.so": {"ok": False, "signal": "SIGILL",
                                          "detail": "crashed: SIGILL (illegal instruction)"},
        "libggml-cpu-zen4.so": {"ok": True, "seconds": 1.5},
    })
    report = selftest.ensure(run=run, cpu=XEON, lib_dir=lib_dir, prefix=str(tmp_path))
    assert report.ok and report.serving == "cpu_avx512_vbmi_vnni_bf16"
    assert run.calls == ["libggml-cpu-sapphirerapids.so", "libggml-cpu-zen4.so"]
    assert "cpu_amx failed the self-test (crashed: SIGILL" in report.lines[0]
    assert "trying the next safer variant" in report.lines[0]
    assert report.lines[1] == "CPU runtime: cpu_avx512_vbmi_vnni_bf16 passed the self-test in 1.5s"
    # the server reads the verdicts: AMX is out, the proven variant serves
    verdicts = selftest.load_results(lib_dir, XEON, selftest.results_path(str(tmp_path)))
    assert verdicts.verdicts() == {"sapphirerapids": False, "zen4": True}
    assert v.choose(XEON, present, verdicts=verdicts.verdicts()).name == \
        "cpu_avx512_vbmi_vnni_bf16"
    # a second run reuses the record; --force tests again
    selftest.ensure(run=run, cpu=XEON, lib_dir=lib_dir, prefix=str(tmp_path))
    assert len(run.calls) == 2
    selftest.ensure(run=run, cpu=XEON, lib_dir=lib_dir, prefix=str(tmp_path), force=True)
    assert len(run.calls) == 4


def test_self_test_results_do_not_carry_over_to_another_build_or_cpu(
        tmp_path: Path, bundled: Path) -> None:
    present = libraries(tmp_path, "x64", "haswell")
    lib_dir = present["x64"].parent
    run = FakeRunner({"libggml-cpu-haswell.so": {"ok": True}})
    selftest.ensure(run=run, cpu=HASWELL, lib_dir=lib_dir, prefix=str(tmp_path))
    path = selftest.results_path(str(tmp_path))
    assert selftest.load_results(lib_dir, HASWELL, path).verdicts() == {"haswell": True}
    assert selftest.load_results(lib_dir, XEON, path).verdicts() == {}
    present["haswell"].write_bytes(b"rebuilt, longer")
    assert selftest.load_results(lib_dir, HASWELL, path).verdicts() == {}


def test_when_every_variant_fails_the_self_test_fails(tmp_path: Path, bundled: Path) -> None:
    present = libraries(tmp_path, "x64", "haswell")
    bad = {"ok": False, "detail": "wrong results: slots 0 and 2 decoded the same prompt "
           "differently"}
    run = FakeRunner({"libggml-cpu-haswell.so": bad, "libggml-cpu-x64.so": bad})
    report = selftest.ensure(run=run, cpu=HASWELL, lib_dir=present["x64"].parent,
                             prefix=str(tmp_path))
    assert not report.ok and report.serving is None
    assert run.calls == ["libggml-cpu-haswell.so", "libggml-cpu-x64.so"]


def test_sigill_is_explained_with_the_instruction_set_the_cpu_and_the_fix(
        tmp_path: Path) -> None:
    present = libraries(tmp_path, "x64", "haswell", "zen4")
    libs = serving.CpuLibraries(HASWELL, present, {}, requested="")
    forced_path = present["zen4"]
    zen4 = v.by_name("zen4", "x86_64")
    choice = v.Choice(zen4, forced_path, "the best variant this CPU runs")
    text = libs.explain_death(choice, "SIGILL")
    assert text.startswith("illegal instruction")
    assert "cpu_avx512_vbmi_vnni_bf16 (libggml-cpu-zen4.so) uses SSE42, AVX" in text
    assert "this CPU has avx, avx2, bmi2, f16c, fma, sse4_2" in text
    assert "it lacks avx512_bf16, avx512_vnni, avx512bw, avx512cd" in text
    assert "ollamactl runtime selftest --force" in text
    assert "OLLAMA_LLM_LIBRARY cpu_avx2" in text
    assert libs.avoided == {"zen4"}                      # the next load takes a safer one
    assert "bus error" in libs.explain_death(choice, "SIGBUS")
    assert libs.explain_death(choice, "SIGTERM") == ""
