"""``hayhooks bench``: how many workers? Measures each count and recommends one.

Only the option parsing lives here; ``hayhooks.bench`` is imported when the command runs, so the
other commands do not pay for it.
"""

import os
from pathlib import Path
from typing import Annotated

import typer

from hayhooks.cli.client import fail


def parse_workers(text: str) -> list[int]:
    """``1,2,4`` -> ``[1, 2, 4]``: positive, unique, in order."""
    try:
        counts = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a comma-separated list of worker counts") from None
    if not counts or counts[0] < 1:
        raise typer.BadParameter("worker counts must be 1 or more")
    return counts


def bench(
    pipeline: Annotated[
        str | None,
        typer.Option(
            "--pipeline", "-n", metavar="NAME", help="Pipeline to drive; default: cpu_heavy if present, else the first."
        ),
    ] = None,
    pipelines_dir: Annotated[
        Path | None,
        typer.Option(
            "--pipelines-dir",
            "-d",
            metavar="DIR",
            help="Pipelines to serve (from a temporary copy: DIR is never changed); default: the bundled examples.",
        ),
    ] = None,
    body: Annotated[
        str | None,
        typer.Option(
            "--body", metavar="JSON", help="Request body; default: a placeholder for each required field ({} if none)."
        ),
    ] = None,
    workers: Annotated[
        str | None,
        typer.Option(
            "--workers", "-w", metavar="1,2,4", help="Worker counts to measure; default: 1, 2, 4, ... to 2x cores."
        ),
    ] = None,
    duration: Annotated[float, typer.Option("--duration", min=1, help="Seconds measured per configuration.")] = 10.0,
    warmup: Annotated[float, typer.Option("--warmup", min=0, help="Seconds of load before each measurement.")] = 2.0,
    connections: Annotated[
        int, typer.Option("--connections", "-c", min=1, help="Concurrent keep-alive connections.")
    ] = 32,
    repeats: Annotated[
        int,
        typer.Option("--repeats", min=1, help="Measurements per row; the row shows the median (noisy machines)."),
    ] = 1,
    preload: Annotated[
        bool, typer.Option("--preload/--no-preload", help="Run the servers with HAYHOOKS_PRELOAD on or off.")
    ] = False,
    both: Annotated[bool, typer.Option("--both", help="Measure every worker count with preload off and on.")] = False,
    load_generator: Annotated[
        str,
        typer.Option(
            "--load-generator",
            metavar="auto|wrk|builtin",
            help="wrk (when on PATH with auto) or the built-in asyncio generator, in a process of its own.",
        ),
    ] = "auto",
    reconnect: Annotated[
        float,
        typer.Option(
            "--reconnect",
            min=0,
            metavar="SECONDS",
            help="Re-open each connection about this often, as many clients would (0: keep them for the whole"
            " run; connections opened at once tend to land on one worker).",
        ),
    ] = 1.0,
    plot: Annotated[
        Path | None,
        typer.Option("--plot", metavar="FILE.png", help="Also draw the results into a PNG (needs matplotlib)."),
    ] = None,
    start_timeout: Annotated[
        float, typer.Option("--start-timeout", min=1, help="Seconds a server may take to serve the pipeline.")
    ] = 120.0,
) -> None:
    """Measure throughput, latency and memory at several worker counts, and recommend one.

    For each worker count (and preload setting) starts gunicorn with the packaged configuration on a
    free 127.0.0.1 port, waits until every worker serves the pipeline, warms it up, then drives
    POST /NAME/run in a closed loop and reads the server's memory (PSS and USS of the master and
    its workers). Prints a table and the smallest worker count within 5% of the best throughput.
    """
    from hayhooks.bench.load import GENERATORS

    if load_generator not in GENERATORS:
        raise typer.BadParameter(f"choose from {', '.join(GENERATORS)}", param_hint="--load-generator")
    counts = parse_workers(workers) if workers else None
    if plot is not None:
        from hayhooks.bench.report import PlotUnavailable, check_plotting

        try:
            check_plotting()
        except PlotUnavailable as error:
            fail(str(error))

    from hayhooks.bench import report
    from hayhooks.bench.runner import BenchConfig, BenchError, default_worker_counts, run_bench

    config = BenchConfig(
        workers=counts or default_worker_counts(),
        preload_modes=[False, True] if both else [preload],
        pipeline=pipeline,
        pipelines_dir=pipelines_dir.absolute() if pipelines_dir else None,
        body=body,
        duration=duration,
        warmup=warmup,
        connections=connections,
        generator=load_generator,
        reconnect=reconnect,
        repeats=repeats,
        start_timeout=start_timeout,
    )
    cores = os.cpu_count() or 1
    try:
        outcome = run_bench(config, progress=lambda line: typer.echo(line, err=True))
    except BenchError as error:
        fail(str(error))
    load = " ".join(f"{value:.2f}" for value in outcome.load_before)
    load_after = " ".join(f"{value:.2f}" for value in outcome.load_after)
    generator = f"wrk -t1 -c{connections}" if outcome.generator == "wrk" else f"built-in generator, {connections} conns"
    generator += f", re-opened every ~{reconnect:g} s" if reconnect else ", kept open"
    median = f" (median of {repeats})" if repeats > 1 else ""
    typer.echo(
        f"POST /{outcome.pipeline}/run {outcome.body} on {cores} cores; {generator};"
        f" {warmup:g} s warm-up + {duration:g} s per row{median}; load average {load} before, {load_after} after\n"
    )
    typer.echo(report.render_table(outcome.rows))
    typer.echo(
        "\nMemory: PSS summed over the master and workers (shared pages split between their users), USS the"
        " private part.\nCPU: cores kept busy by the server (and the least and most busy worker), the load"
        " generator and everything else.\n"
    )
    typer.echo(report.render_recommendation(report.recommend(outcome.rows, cores), outcome.rows))
    if note := report.noise_note(outcome.rows, cores, outcome.load_before[0]):
        typer.echo(note)
    if plot is not None:
        title = f"hayhooks bench: POST /{outcome.pipeline}/run, {cores} cores, {outcome.generator}"
        report.plot(outcome.rows, plot, title)
        typer.echo(f"Chart: {plot}")
