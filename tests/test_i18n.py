"""Languages: the Chinese catalogue is complete and keeps every placeholder; the language is
chosen by --lang or the locale; the CLI and the agent's log speak it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from netprobe import i18n
from netprobe.i18n import _, read_po, resolve, use_language

CATALOGUE = Path(i18n.__file__).parent / "zh_CN" / "netprobe.po"
PLACEHOLDER = re.compile(r"\{[^{}]*\}|%[-.\d]*[sdf]")


def extracted_messages() -> set[str]:
    """Every message the code marks, as Babel extracts them."""
    extract = pytest.importorskip("babel.messages.extract")
    found: set[str] = set()
    root = Path(i18n.__file__).parent.parent
    for path in root.rglob("*.py"):
        with path.open("rb") as handle:
            for _line, message, _comments, _context in extract.extract(
                "python", handle, keywords={"_": None, "N_": None, "ngettext": (1, 2)}
            ):
                text = (
                    (message[0] if message else None)
                    if isinstance(message, tuple | list)
                    else message
                )
                if text:  # `_(variable)` has no text to extract
                    found.add(text)
    return found


def test_every_message_has_a_chinese_translation() -> None:
    translated = read_po(CATALOGUE)
    missing = sorted(extracted_messages() - set(translated))
    assert missing == [], "untranslated (run scripts/update-catalogue.sh): " + repr(missing)


def test_translations_keep_every_placeholder() -> None:
    for message, translation in read_po(CATALOGUE).items():
        assert sorted(PLACEHOLDER.findall(message)) == sorted(PLACEHOLDER.findall(translation)), (
            message
        )


def test_the_runtime_reader_agrees_with_babel() -> None:
    pofile = pytest.importorskip("babel.messages.pofile")
    with CATALOGUE.open("rb") as handle:
        catalogue = pofile.read_po(handle)
    by_babel = {
        (m.id[0] if isinstance(m.id, tuple) else m.id): (
            m.string[0] if isinstance(m.string, tuple) else m.string
        )
        for m in catalogue
        if m.id
    }
    assert read_po(CATALOGUE) == by_babel


@pytest.mark.parametrize(
    ("asked", "environment", "language"),
    [
        ("zh_CN", {}, "zh_CN"),
        ("zh-CN", {}, "zh_CN"),
        ("en", {"LANG": "zh_CN.UTF-8"}, "en"),
        (None, {"LANG": "zh_CN.UTF-8"}, "zh_CN"),
        (None, {"LANGUAGE": "de:zh_CN", "LANG": "en_US.UTF-8"}, "zh_CN"),
        (None, {"LANG": "C.UTF-8"}, "en"),
        (None, {}, "en"),
    ],
)
def test_the_language_comes_from_lang_or_the_locale(
    asked: str | None,
    environment: dict[str, str],
    language: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for variable in ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG"):
        monkeypatch.delenv(variable, raising=False)
    for variable, value in environment.items():
        monkeypatch.setenv(variable, value)
    assert resolve(asked) == language


def test_messages_switch_language() -> None:
    try:
        use_language("zh_CN")
        assert _("download") == "下载"
        assert _("theoretical (advertised)") == "签约速率（理论速率）"
        assert _("a message nobody translated") == "a message nobody translated"
    finally:
        use_language("en")
    assert _("download") == "download"


def test_the_cli_speaks_the_locale(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "netprobe", "results", "list", "--store", "nowhere.db"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={**os.environ, "LANG": "zh_CN.UTF-8", "LANGUAGE": ""},
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("netprobe：错误：")


def test_the_agent_log_line_is_translated() -> None:
    from netprobe.agent.sinks import describe_line
    from netprobe.results import DirectionResult, LineResult, Method, Server

    result = LineResult(server=Server(url="http://192.0.2.1:8080"))
    result.download = DirectionResult("download", True, 12.5e6)
    result.upload = DirectionResult.failed("upload", "timeout", "timed out", Method())
    result.outcome, result.valid, result.invalid_reason = "failed", False, "failed"
    try:
        use_language("zh_CN")
        line = describe_line(result.to_dict())
    finally:
        use_language("en")
    assert line == "线路测速失败：下载 100.0 Mbit/s, 上传 失败：timed out；无效（failed）"
