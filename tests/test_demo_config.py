"""Demo settings: AppConfig checks, --auth parsing, launch arguments, and the off-by-default hub push."""

from __future__ import annotations

import pytest

from demo.config import (
    AppConfig,
    AppConfigError,
    keyboard_head,
    launch_kwargs,
    oauth_enabled,
    parse_auth,
    server_address,
)
from demo.hub import HubPushConfig


@pytest.mark.parametrize("kwargs, message", [
    ({"concurrency_limit": 0}, "concurrency_limit=0"),
    ({"max_queue_size": -1}, "max_queue_size=-1"),
    ({"max_batch_items": True}, "max_batch_items=True"),
    ({"max_upload_mb": 2.5}, "max_upload_mb=2.5"),
    ({"candidates_shown": 10}, "candidates_shown=10"),
    ({"title": "  "}, "title is empty"),
    ({"examples": ("/nope/x.jsonl",)}, "does not exist"),
])
def test_config_errors_name_the_value(kwargs, message):
    with pytest.raises(AppConfigError, match=message.replace("(", r"\(")):
        AppConfig(**kwargs)


def test_default_config_finds_the_shipped_examples():
    cfg = AppConfig()
    assert len(cfg.examples) == 2 and all(p.endswith(".jsonl") for p in cfg.examples)


@pytest.mark.parametrize("spec, expected", [
    (None, None), ("", None), ("  ", None),
    ("alice:pw", [("alice", "pw")]),
    ("alice:pw:with:colons, bob:x", [("alice", "pw:with:colons"), ("bob", "x")]),
])
def test_parse_auth(spec, expected):
    assert parse_auth(spec) == expected


@pytest.mark.parametrize("spec", ["alice", "alice:", ":pw", "alice:pw,,bob:x"])
def test_parse_auth_errors(spec):
    with pytest.raises(AppConfigError, match="is not 'user:password'"):
        parse_auth(spec)


@pytest.mark.parametrize("env, expected", [
    ({}, (None, None)),
    ({"GRADIO_SERVER_NAME": "0.0.0.0", "GRADIO_SERVER_PORT": "7861"}, ("0.0.0.0", 7861)),
])
def test_server_address(env, expected):
    assert server_address(env) == expected


@pytest.mark.parametrize("port", ["http", "0", "70000"])
def test_server_port_errors(port):
    with pytest.raises(AppConfigError, match="GRADIO_SERVER_PORT"):
        server_address({"GRADIO_SERVER_PORT": port})


def test_launch_kwargs(tmp_path):
    cfg = AppConfig(max_upload_mb=3, work_dir=str(tmp_path))
    kw = launch_kwargs(cfg, [("a", "b")], env={"GRADIO_SERVER_PORT": "9000"}, extra_paths=("/srv/images",))
    assert kw["server_port"] == 9000 and kw["server_name"] is None and kw["auth"] == [("a", "b")]
    assert kw["max_file_size"] == 3 * 1024 * 1024 and kw["show_error"] is False
    assert "/srv/images" in kw["allowed_paths"] and str(tmp_path) in kw["allowed_paths"]
    assert kw["head"].startswith("<script>") and "keydown" in kw["head"] and ".gemel-accept" in kw["head"]
    assert launch_kwargs(cfg, None, env={})["auth_message"] is None


def test_keyboard_script_ignores_typing():
    js = keyboard_head()
    assert "TEXTAREA" in js and "isContentEditable" in js and "function typing" in js


def test_oauth_only_on_spaces_with_oauth():
    assert oauth_enabled({}) is False and oauth_enabled({"OAUTH_CLIENT_ID": "abc"}) is True


@pytest.mark.parametrize("env", [
    {},
    {"HF_TOKEN": "hf_x"},
    {"GEMEL_HUB_DATASET": "me/corrections"},  # no token: off, with a warning
    {"GEMEL_HUB_DATASET": "", "HF_TOKEN": "hf_x"},
])
def test_hub_push_is_off_by_default(env):
    assert HubPushConfig.from_env(env) is None


def test_hub_push_configured():
    cfg = HubPushConfig.from_env({"GEMEL_HUB_DATASET": "me/corrections", "HF_TOKEN": "hf_x", "GEMEL_HUB_EVERY": "30"})
    assert cfg == HubPushConfig("me/corrections", "hf_x", 30.0)
    assert HubPushConfig.from_env({"GEMEL_HUB_DATASET": "me/c", "HF_TOKEN": "t"}).every_minutes == 10.0


@pytest.mark.parametrize("env, message", [
    ({"GEMEL_HUB_DATASET": "corrections", "HF_TOKEN": "t"}, "'owner/name'"),
    ({"GEMEL_HUB_DATASET": "me/c", "HF_TOKEN": "t", "GEMEL_HUB_EVERY": "soon"}, "not a number"),
    ({"GEMEL_HUB_DATASET": "me/c", "HF_TOKEN": "t", "GEMEL_HUB_EVERY": "0.5"}, ">= 1 minute"),
])
def test_hub_push_errors(env, message):
    with pytest.raises(ValueError, match=message):
        HubPushConfig.from_env(env)


def test_root_app_is_thin():
    from pathlib import Path

    source = (Path(__file__).resolve().parent.parent / "app.py").read_text()
    code = [line for line in source.splitlines() if line.strip() and not line.startswith((" ", '"'))]
    assert "from demo.app import main" in source and len(source.splitlines()) <= 15
    assert code and all(not line.startswith("import gradio") for line in code)


def test_cli_help(capsys):
    from demo.app import parse_args

    with pytest.raises(SystemExit):
        parse_args(["--help"])
    out = capsys.readouterr().out
    for flag in ("--profile", "--db", "--auth", "--allow-server-paths"):
        assert flag in out
