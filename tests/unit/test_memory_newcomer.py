"""Memory as a newcomer meets it (fake `hash` embedding, real local Chroma): .gz ingest, recall lines that show
the matched sentence, forgetting a source with the episodes that quoted it, and no lessons from runs that failed
because the model was unreachable."""

from __future__ import annotations

import gzip

import pytest
from agentd_memory import snippet
from agentd_memory.commands import memory
from agentd_memory.store import Hit, get_memory
from click.testing import CliRunner

from agentd import Goal
from agentd.testing import call, feedback, make_test_app, plan

# min_score 0: the hash embedding's scores are lower than a real model's.
FAKE = {"plugins.memory": {"embedding": {"provider": "hash"}, "min_score": 0.0}}
FILLER = " ".join(f"Paragraph {i} of the handbook talks about office plants and the coffee machine." for i in range(6))
FACT = "The staging database password rotates every Tuesday at noon."


@pytest.fixture
def fake_embedding_home(home):
    (home / "configs").mkdir(exist_ok=True)
    (home / "configs" / "agentd.toml").write_text('[plugins.memory.embedding]\nprovider = "hash"\n')
    return home


def test_gz_text_is_ingested_and_a_broken_gz_is_skipped_with_a_reason(fake_embedding_home, tmp_path):
    good = tmp_path / "ops.md.gz"
    good.write_bytes(gzip.compress(f"# Ops\n\n{FACT}\n".encode()))
    broken = tmp_path / "broken.txt.gz"
    broken.write_bytes(b"not gzip at all")
    result = CliRunner().invoke(memory, ["ingest", str(good), str(broken)])
    assert result.exit_code == 0, result.output
    assert "1 added" in result.output and "1 skipped" in result.output
    assert f"skipped {broken}: not a readable gzip file" in result.output
    hits = CliRunner().invoke(memory, ["search", "staging database password", "-k", "1"]).output
    assert "rotates every Tuesday" in hits and str(good) in hits


def test_recall_line_shows_the_sentence_that_matched_not_a_prefix():
    hit = Hit(id="doc-1-0", kind="document", text=f"{FILLER}\n\n{FACT} Ask ops for access.",
              meta={"source": "/docs/handbook.md", "chunk": 0})
    line = snippet(hit, 200, query="When does the staging database password rotate?")
    assert line.startswith("[doc handbook.md#0] … The staging database password rotates every Tuesday at noon.")
    assert snippet(hit, 200).startswith("[doc handbook.md#0] Paragraph 0")  # no query: the start, as before
    short = Hit(id="n", kind="note", text=FACT, meta={"created_at": 0})
    assert FACT in snippet(short, 200, query="office plants")  # fits whole: shown whole


def test_recalled_document_line_in_a_run_carries_the_fact(home, tmp_path):
    doc = tmp_path / "handbook.md"
    doc.write_text(f"{FILLER}\n\n{FACT}\n")
    app, _ = make_test_app(home, [plan(("answer", "write_file")), call("write_file", path="a.md", content="x"),
                                  feedback("done", final_answer="Tuesday")], settings=FAKE)
    try:
        get_memory(app.config).ingest([doc])
        run_id = app.engine.submit(Goal(text="When does the staging database password rotate?"))
        app.engine.run(run_id)
        context = next(p for p in app.journal.phases(run_id) if p["kind"] == "context")
        assert any(FACT in m[:160] for m in context["memories"]), context["memories"]  # what the CLI shows
    finally:
        app.close()


def test_forget_source_also_forgets_the_episodes_that_quoted_it(home, tmp_path):
    doc = tmp_path / "handbook.md"
    doc.write_text(f"{FACT}\n")
    replies = [plan(("answer", "write_file")), call("write_file", path="a.md", content="x"),
               feedback("done", final_answer="every Tuesday")]
    app, _ = make_test_app(home, replies * 2, settings=FAKE)
    try:
        mem = get_memory(app.config)
        mem.ingest([doc])
        recalled = app.engine.run(app.engine.submit(Goal(text="When does the staging password rotate?")))["run_id"]
        named = app.engine.run(app.engine.submit(Goal(text=f"Summarise {doc} into a.md")))["run_id"]
        episodes = {h.id for h in mem.list(kind="episode")}
        assert episodes == {f"ep-{recalled}", f"ep-{named}"}
        assert "Recalled documents: " + str(doc) in mem.search("staging password", kind="episode")[0].text
        removed = mem.forget(source=str(doc))
        assert removed == 3  # the document's one chunk and both episodes
        assert mem.list(kind="episode") == [] and mem.search("staging password rotate") == []
    finally:
        app.close()


def test_runs_that_failed_for_infrastructure_leave_no_episode_and_old_ones_are_not_recalled(home):
    def unreachable(prompt: str):
        raise ConnectionError("Connection refused")

    app, _ = make_test_app(home, [unreachable], settings=FAKE)
    try:
        mem = get_memory(app.config)
        outcome = app.engine.run(app.engine.submit(Goal(text="Summarise the weekly sales figures")))
        assert outcome["stop_reason"] == "model_error"
        assert mem.list(kind="episode") == []
        # An episode an older agentd wrote for such a run is stored but never recalled.
        mem.add_episode("old-run", "Summarise the weekly sales figures", [], status="failed",
                        stop_reason="model_error", lessons=["Did not succeed (model_error): Connection refused"])
        from agentd_memory import extend_context

        assert extend_context(Goal(text="Summarise the weekly sales figures"), "r-next", app.config) == []
    finally:
        app.close()
