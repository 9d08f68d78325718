"""Plain-text rendering of the server's ``/status`` answer; older servers' shorter answers render too."""

import time
from typing import Any

REVISION_WIDTH = 12


def render_status(url: str, data: dict[str, Any]) -> str:
    """A headline, one table row per pipeline with each worker's revision, the agreement line, the errors."""
    details = {d["name"]: d for d in data.get("details") or [] if isinstance(d, dict) and "name" in d}
    cluster = data.get("cluster") or {}
    workers = cluster.get("workers") or _answering_worker(data, details)
    names = sorted(
        set(data.get("pipelines") or [])
        | set(details)
        | {name for worker in workers for name in worker.get("pipelines") or {}}
    )
    lines = [_headline(url, data)]
    if not names:
        lines.append("no pipelines deployed")
    else:
        header = ["PIPELINE", "STATE", *(f"PID {worker.get('pid', '?')}" for worker in workers)]
        rows = [[name, _state(name, details, workers), *(_cell(w, name) for w in workers)] for name in names]
        lines += ["", *_table([header, *rows])]
    if cluster.get("workers"):
        lines.append(_agreement(cluster, workers, names))
    errors = [
        f"  {name}: {details[name]['error']}{_retry(details[name])}"
        for name in names
        if details.get(name, {}).get("error")
    ]
    if errors:
        lines += ["", "errors:", *(error.replace("\n", "\n    ") for error in errors)]
    return "\n".join(lines)


def _retry(detail: dict[str, Any]) -> str:
    """When the answering worker tries a failed load again (HAYHOOKS_LOAD_RETRY), and how often it tried."""
    attempts, at = detail.get("attempts"), detail.get("next_retry_at")
    if not isinstance(at, (int, float)):
        return f" (attempt {attempts}; not retried until its files change)" if attempts else ""
    return f" (attempt {attempts}; next try in {max(0.0, at - time.time()):.0f} s)"


def compare_instances(answers: dict[str, dict[str, Any] | None]) -> tuple[bool, str]:
    """Whether every worker of every instance serves the same revision of every pipeline, none is
    starting and no load is under way, and a line saying so (naming the pipelines that failed to
    load: given up on, they do not hold convergence back). ``answers`` maps each instance's URL to
    its ``/status`` answer (``None``: no answer)."""
    missing = [url for url, data in answers.items() if data is None]
    workers = [w for data in answers.values() if data for w in (data.get("cluster") or {}).get("workers") or []]
    names = sorted({name for worker in workers for name in worker.get("pipelines") or {}})
    split = [name for name in names if len({_field(worker, name, "revision") for worker in workers}) > 1]
    busy = ("waiting", "loading")  # waiting: for its turn among the workers (HAYHOOKS_MAX_WORKERS_LOADING)
    loading = [name for name in names if any(_field(worker, name, "state") in busy for worker in workers)]
    failed = [name for name in names if any(_field(worker, name, "state") == "failed" for worker in workers)]
    starting = [url for url, data in answers.items() if data and (data.get("cluster") or {}).get("starting")]
    one = len(answers) == 1
    if not missing and not split and not loading and not starting and workers:
        counted = f"{len(workers)} workers" if one else f"{len(answers)} instances ({len(workers)} workers)"
        return True, f"all {counted} agree" + (f"; failed to load: {', '.join(failed)}" if failed else "")
    reasons = [f"revisions differ for {', '.join(split)}"] if split else []
    reasons += [f"loading: {', '.join(loading)}"] if loading else []
    reasons += [f"starting: {', '.join(starting)}"] if starting else []
    reasons += [f"no answer from {', '.join(missing)}"] if missing else []
    return False, f"{'workers' if one else 'instances'} disagree: {'; '.join(reasons) or 'no workers reported'}"


def _headline(url: str, data: dict[str, Any]) -> str:
    """``hayhooks at URL: Up!``, naming the worker that answered and the count of workers started
    (and where that count came from) when the server says."""
    line = f"hayhooks at {url}: {data.get('status', 'answered')}"
    worker = data.get("worker") or {}
    if worker.get("pid") is not None:
        where = f"{worker.get('host', '?')}:{worker.get('port', '?')}"
        line += f" (answered by worker pid {worker['pid']} on {where})"
    server = data.get("server") or {}
    if count := server.get("workers"):
        line += f"; {count} worker{'' if count == 1 else 's'} from {server.get('workers_source') or '?'}"
    return line


def _answering_worker(data: dict[str, Any], details: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Without a cluster view, the answering worker's own details as a one-worker cluster."""
    if not details:
        return []
    pid = (data.get("worker") or {}).get("pid", "?")
    return [{"pid": pid, "pipelines": details}]


def _state(name: str, details: dict[str, dict[str, Any]], workers: list[dict[str, Any]]) -> str:
    """The answering worker's state of ``name``, else the states the workers report, else ``-``."""
    if details.get(name, {}).get("state"):
        return str(details[name]["state"])
    states = {str(entry["state"]) for w in workers if (entry := _entry(w, name)) and entry.get("state")}
    return "/".join(sorted(states)) or "-"


def _entry(worker: dict[str, Any], name: str) -> dict[str, Any] | None:
    """What ``worker`` reports about pipeline ``name``, if anything."""
    return (worker.get("pipelines") or {}).get(name)


def _field(worker: dict[str, Any], name: str, key: str) -> str | None:
    """One field (``revision``, ``state``) of what ``worker`` reports about ``name``."""
    return (_entry(worker, name) or {}).get(key)


def _cell(worker: dict[str, Any], name: str) -> str:
    """The revision ``worker`` serves for ``name``, with its state when that is not ``ready``."""
    entry = _entry(worker, name)
    if not entry:
        return "-"
    revision, state = entry.get("revision"), entry.get("state")
    if not revision:
        return str(state or "-")
    short = str(revision)[:REVISION_WIDTH]
    return short if state in (None, "ready") else f"{short} ({state})"


def _agreement(cluster: dict[str, Any], workers: list[dict[str, Any]], names: list[str]) -> str:
    """``all N workers agree``, or what they disagree on; the server's ``converged`` has the last word."""
    split = [name for name in names if len({_cell(worker, name) for worker in workers}) > 1]
    converged = cluster.get("converged")
    if converged if converged is not None else not split:
        return f"all {len(workers)} workers agree"
    reasons = []
    if split:
        reasons.append(f"revisions differ for {', '.join(split)}")
    if cluster.get("loading"):
        reasons.append(f"loading: {', '.join(str(item) for item in cluster['loading'])}")
    if cluster.get("lagging"):
        reasons.append(f"lagging: {', '.join(str(item) for item in cluster['lagging'])}")
    return f"workers disagree: {'; '.join(reasons) or 'the server reports they have not converged'}"


def _table(rows: list[list[str]]) -> list[str]:
    """Rows as left-aligned columns two spaces apart."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]
