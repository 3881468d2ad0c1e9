"""python-worker: a flexec job written in Python (standard library only).

It trains for `set.rounds` pretend rounds of `set.round_ms` each (`set.rounds: 0`
runs until aborted), publishes its progress as stats, reports one warning, and
answers `app/echo` (JSON or bytes, sent back as they came) and `app/whoami`.
The site runs it with the command ["python3", "{appDir}/main.py"].
"""
from flexec_worker import ConfigError, run_job


def run(ctx):
    rounds = ctx.set.get("rounds", 3)
    round_ms = ctx.set.get("round_ms", 100)
    if not isinstance(rounds, int) or not isinstance(round_ms, (int, float)) or rounds < 0:
        raise ConfigError("set.rounds must be an integer >= 0 and set.round_ms a number")
    ctx.report_error("python-worker is an example", group="example", level="warning")
    print("python-worker %s on %s: %s rounds" % (ctx.job_id, ctx.client_name, rounds or "unlimited"), flush=True)
    done = 0
    while rounds == 0 or done < rounds:
        task = ctx.task_signal()
        # One round of "work": a wait that ends early if the job or this task is aborted.
        task.wait(round_ms / 1000)
        if ctx.aborted:
            print("aborted after %d rounds" % done, flush=True)
            return 0
        done += 1
        ctx.set_stats("training", {"round": done, "of": rounds, "loss": round(1 / done, 3)})
    print("done", flush=True)
    return 0


def echo(value, ctx):
    return value


def whoami(value, ctx):
    return {"jobId": ctx.job_id, "client": ctx.client_name, "logLevel": ctx.log_level}


if __name__ == "__main__":
    run_job(run, handlers={"app": {"echo": echo, "whoami": whoami}})
