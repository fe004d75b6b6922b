"""Every process of the stack sends tasks through the project's Celery app, proven from processes started the
way the launcher starts them (not through this test process, where pytest-django has already loaded it).

Before the fix, the web server and ``manage.py shell`` got Celery's default app (``main == 'default'``,
broker AMQP on localhost): admin "Train now" never reached the ml worker and the precise firing of scheduled
orders went the same wrong way.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from django.conf import settings

from core.launcher import build_specs
from mlmodel.models import TrainingRun, TrainingState
from tests import live
from tests.accounts.factories import UserFactory

_PROBE = """
import json
from django.conf import settings
from mlmodel.tasks import train_model
from trading.tasks import fire_scheduled_order
print("PROBE " + json.dumps({
    "train_model": [train_model.app.main, train_model.app.conf.broker_url],
    "fire_scheduled_order": [fire_scheduled_order.app.main, fire_scheduled_order.app.conf.broker_url],
    "configured": settings.CELERY_BROKER_URL,
}))
"""


def _probe(output: str) -> dict:
    line = next((ln for ln in output.splitlines() if ln.startswith("PROBE ")), None)
    assert line is not None, output[-3000:]
    return json.loads(line[len("PROBE ") :])


def _assert_project_app(found: dict) -> None:
    assert found["configured"] == settings.CELERY_BROKER_URL  # the same environment as this test run
    for task in ("train_model", "fire_scheduled_order"):
        assert found[task] == ["observator", found["configured"]], found


def _launcher_specs(port: int) -> dict:
    specs, _shared = build_specs(
        host="127.0.0.1",
        port=port,
        simulate=False,
        sim_port=0,
        markets=["KRW-BTC"],
        available_commands=set(),
    )
    return {s.name: s for s in specs}


def test_manage_py_shell_sends_through_the_project_celery_app():
    out = subprocess.run(
        [live.PYTHON, "manage.py", "shell", "-c", _PROBE],
        cwd=live.ROOT,
        env=live.child_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    _assert_project_app(_probe(out.stdout))


def test_the_web_servers_asgi_application_sends_through_the_project_celery_app():
    """What uvicorn does with ``observator.asgi:application`` (the launcher's web process): import the module,
    then nothing else; tasks sent from its views must use the project's app."""
    web = _launcher_specs(live.free_port())["web"]
    app_ref = next(a for a in web.args if a.endswith(":application"))
    module = app_ref.split(":")[0]
    code = f"import importlib; importlib.import_module({module!r})\n" + _PROBE
    env = {**live.child_env(), **web.env}
    out = subprocess.run(
        [live.PYTHON, "-c", code], cwd=live.ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-3000:]
    _assert_project_app(_probe(out.stdout))


def test_a_precise_scheduled_order_is_published_to_the_configured_broker(tmp_path: Path):
    """``_queue_precise`` (trading/services/scheduled.py) from a ``manage.py shell``: the message is published
    (Celery's after_task_publish) and no "could not queue" warning is logged. On an embedded broker of its
    own, so that nothing reaches another run's workers."""
    code = """
import datetime as dt, json
from celery.signals import after_task_publish
from trading.services import scheduled
seen = []
after_task_publish.connect(lambda sender=None, routing_key=None, **kw: seen.append([sender, routing_key]),
                           weak=False)
scheduled._queue_precise(987654321, dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))
print("PUBLISHED " + json.dumps(seen))
"""
    env = live.child_env({"OBSERVATOR_VAR_DIR": str(tmp_path / "var")})
    env.pop("REDIS_URL", None)
    out = subprocess.run(
        [live.PYTHON, "manage.py", "shell", "-c", code],
        cwd=live.ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "could not queue" not in out.stdout + out.stderr
    line = next(ln for ln in out.stdout.splitlines() if ln.startswith("PUBLISHED "))
    assert json.loads(line[len("PUBLISHED ") :]) == [["trading.tasks.fire_scheduled_order", "default"]]


# ----------------------------------------------------------------------------- end to end


@dataclass
class Stack:
    url: str
    web_log: Path
    ml_log: Path


def _admin_session(url: str, username: str, password: str) -> httpx.Client:
    client = httpx.Client(base_url=url, timeout=30.0)
    client.get("/admin/login/")
    r = client.post(
        "/admin/login/?next=/admin/",
        data={
            "csrfmiddlewaretoken": client.cookies["csrftoken"],
            "username": username,
            "password": password,
            "next": "/admin/",
        },
    )
    assert r.status_code == 302 and r.headers["location"] == "/admin/", r.text[-2000:]
    return client


def _form_token(html: str) -> str:
    m = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html)
    assert m, html[-2000:]
    return m.group(1)


@pytest.fixture(params=["embedded", "redis"])
def web_and_ml_worker(request, transactional_db, tmp_path: Path) -> Iterator[Stack]:  # noqa: ANN001
    """The launcher's web process (uvicorn) and ml worker, on a broker of their own: the embedded default
    in a private var directory, or Redis (a database of its own, so another run's worker on the same Redis
    cannot take the message)."""
    extra = {"OBSERVATOR_VAR_DIR": str(tmp_path / "var")}
    if request.param == "redis":
        url = os.environ.get("REDIS_URL", "")
        if not url:
            pytest.skip("needs REDIS_URL (CI runs with the real Redis)")
        extra["REDIS_URL"] = re.sub(r"/\d*$", "", url.rstrip("/")) + f"/{2 + os.getpid() % 14}"
    port = live.free_port()
    specs = _launcher_specs(port)
    web, ml = specs["web"], specs["ml"]
    base_env = live.child_env(extra)
    if request.param == "embedded":
        base_env.pop("REDIS_URL", None)
    base_env["MARKET_DATA_DIR"] = str(tmp_path / "no-data")  # training fails fast: it was picked up
    stack = Stack(f"http://127.0.0.1:{port}", tmp_path / "web.log", tmp_path / "ml.log")
    with (
        live.running(web.args, env={**base_env, **web.env}, log_path=stack.web_log) as web_proc,
        live.running(ml.args, env={**base_env, **ml.env}, log_path=stack.ml_log),
    ):
        live.wait_for_http(f"{stack.url}/healthz", timeout=90, proc=web_proc)
        yield stack


@pytest.mark.live
def test_admin_train_now_in_the_web_process_is_picked_up_by_the_ml_worker(web_and_ml_worker: Stack):
    stack = web_and_ml_worker
    UserFactory(username="boss", password="a-long-password-1", is_staff=True, is_superuser=True)
    client = _admin_session(stack.url, "boss", "a-long-password-1")
    page = client.get("/admin/mlmodel/modelversion/")
    assert page.status_code == 200 and "/admin/mlmodel/trainingrun/train-now/" in page.text
    form = client.get("/admin/mlmodel/trainingrun/train-now/")
    r = client.post(
        "/admin/mlmodel/trainingrun/train-now/",
        data={
            "csrfmiddlewaretoken": _form_token(form.text),
            "market": "KRW-BTC",
            "days": "1",
            "epochs": "2",
            "horizon_s": "10",
            "n_splits": "1",
        },
    )
    assert r.status_code == 302, r.text[-2000:]
    run = TrainingRun.objects.get()
    assert r.headers["location"].endswith(f"/admin/mlmodel/trainingrun/{run.pk}/progress/")

    def finished() -> bool:
        run.refresh_from_db()
        return run.is_finished

    try:
        live.wait_until(finished, timeout=120, interval=0.5, message="the ml worker ran the training run")
    except TimeoutError:
        pytest.fail(f"run {run.state}/{run.stage}\nweb: {_tail(stack.web_log)}\nml: {_tail(stack.ml_log)}")
    # The ml worker took it (and ran it in its own training process), which found no data: not "undelivered".
    assert run.picked_up_at is not None and run.process_id, run.stage
    assert run.state == TrainingState.FAILED and run.stage == "failed"
    assert "No order-book day files" in run.message, run.message
    data = client.get(f"/admin/mlmodel/trainingrun/{run.pk}/progress.json").json()
    assert data["finished"] and not data["undelivered"]


def _tail(path: Path) -> str:
    return path.read_text(errors="replace")[-3000:] if path.exists() else "(no log)"
