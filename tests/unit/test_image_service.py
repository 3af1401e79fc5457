"""The image pipeline's lifecycle (lazy load, queue, idle release, unload around use) with fake pipelines."""

from __future__ import annotations

import threading

import pytest
from agentd_image import service
from agentd_image.service import PipelineService

from agentd import ToolError


class FakeLoads:
    """Counts loads and releases of a stand-in pipeline."""

    def __init__(self, fail: Exception | None = None) -> None:
        self.loaded = 0
        self.released: list[object] = []
        self.released_event = threading.Event()
        self.fail = fail

    def load(self) -> dict:
        if self.fail is not None:
            raise self.fail
        self.loaded += 1
        return {"pipe": self.loaded}

    def release(self, pipe: object) -> None:
        self.released.append(pipe)
        self.released_event.set()


@pytest.fixture(autouse=True)
def _no_shared_pipeline():
    yield
    service.release_all()


def make(fake: FakeLoads, key: str = "k") -> PipelineService:
    return PipelineService(key, fake.load, fake.release)


def test_loads_lazily_once_and_stays_warm():
    fake = FakeLoads()
    svc = make(fake)
    assert fake.loaded == 0 and svc.loaded is None
    first, info1 = svc.use(lambda p: p["pipe"], keep_warm_s=60, cancel=threading.Event())
    second, info2 = svc.use(lambda p: p["pipe"], keep_warm_s=60, cancel=threading.Event())
    assert (first, second) == (1, 1)
    assert info1.cold_start and not info2.cold_start
    assert not info2.released_after and fake.released == []
    svc.close()
    assert fake.released == [{"pipe": 1}]


def test_keep_warm_zero_loads_and_releases_around_every_call():
    fake = FakeLoads()
    svc = make(fake)
    for expected in (1, 2):
        value, info = svc.use(lambda p: p["pipe"], keep_warm_s=0, cancel=threading.Event())
        assert value == expected and info.cold_start and info.released_after
        assert svc.loaded is None
    assert fake.released == [{"pipe": 1}, {"pipe": 2}]


def test_idle_timer_releases_the_pipeline():
    fake = FakeLoads()
    svc = make(fake)
    svc.use(lambda p: None, keep_warm_s=0.05, cancel=threading.Event())
    assert fake.released_event.wait(10), "the idle timer never released the pipeline"
    assert svc.loaded is None
    _, info = svc.use(lambda p: None, keep_warm_s=60, cancel=threading.Event())
    assert info.cold_start and fake.loaded == 2


def test_a_call_rearms_the_timer_so_a_stale_timer_does_not_release():
    fake = FakeLoads()
    svc = make(fake)
    svc.use(lambda p: None, keep_warm_s=60, cancel=threading.Event())
    stale = svc._timer
    svc.use(lambda p: None, keep_warm_s=60, cancel=threading.Event())
    assert svc._timer is not stale and stale.finished.is_set()  # cancelled, so it never fires
    assert svc.loaded is not None and fake.released == []
    svc.close()


def test_concurrent_calls_queue_one_at_a_time():
    fake = FakeLoads()
    svc = make(fake)
    inside = []
    overlap = []
    first_in = threading.Event()
    go_on = threading.Event()

    def work(tag):
        def run(pipe):
            inside.append(tag)
            overlap.append(len(inside))
            if tag == "first":
                first_in.set()
                go_on.wait(10)
            inside.remove(tag)
            return tag

        return run

    results = {}
    t1 = threading.Thread(target=lambda: results.update(a=svc.use(work("first"), 60, threading.Event())[0]))
    t1.start()
    assert first_in.wait(10)
    t2 = threading.Thread(target=lambda: results.update(b=svc.use(work("second"), 60, threading.Event())[0]))
    t2.start()
    t2.join(0.3)
    assert t2.is_alive(), "the second call should wait for the first"
    go_on.set()
    t1.join(10)
    t2.join(10)
    assert results == {"a": "first", "b": "second"}
    assert max(overlap) == 1 and fake.loaded == 1


def test_cancel_while_queued_is_a_tool_error():
    fake = FakeLoads()
    svc = make(fake)
    svc._lock.acquire()  # another call holds the pipeline
    cancel = threading.Event()
    cancel.set()
    try:
        with pytest.raises(ToolError, match="cancelled while waiting"):
            svc.use(lambda p: None, 60, cancel)
    finally:
        svc._lock.release()
    assert fake.loaded == 0


def test_failing_work_releases_the_pipeline_and_the_next_call_reloads():
    fake = FakeLoads()
    svc = make(fake)

    def boom(pipe):
        raise RuntimeError("CUDA out of memory")

    with pytest.raises(RuntimeError):
        svc.use(boom, keep_warm_s=60, cancel=threading.Event())
    assert svc.loaded is None and fake.released == [{"pipe": 1}]
    _, info = svc.use(lambda p: None, keep_warm_s=60, cancel=threading.Event())
    assert info.cold_start and fake.loaded == 2
    svc.close()


def test_failing_load_leaves_nothing_loaded():
    fake = FakeLoads(fail=ToolError("no model"))
    svc = make(fake)
    with pytest.raises(ToolError, match="no model"):
        svc.use(lambda p: None, keep_warm_s=60, cancel=threading.Event())
    assert svc.loaded is None and svc._timer is None


def test_service_for_another_model_releases_the_first():
    fake_a, fake_b = FakeLoads(), FakeLoads()
    a = service.service_for("a", fake_a.load, fake_a.release)
    assert service.service_for("a", fake_b.load, fake_b.release) is a
    a.use(lambda p: None, keep_warm_s=60, cancel=threading.Event())
    b = service.service_for("b", fake_b.load, fake_b.release)
    assert b is not a
    assert fake_a.released == [{"pipe": 1}] and a.loaded is None
