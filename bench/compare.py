#!/usr/bin/env python3
"""Compare pubsubd with the server's routing ceiling and built-in pubsub, in one run.

Starts one throwaway server (prosody or ejabberd) with PostgreSQL and pubsubd
through `pubsubd-load serve-env`, then runs every scenario against it, each
several times, and prints the medians and the ratios against the baselines
measured in the same run (the machines are shared and noisy, so only ratios
taken side by side mean much).

    bench/compare.py prosody            # full sizes (tens of minutes)
    bench/compare.py ejabberd --smoke   # small sizes, under a minute or two
    bench/compare.py prosody --only firehose,route --runs 3 --json out.json
    PUBSUBD_UNPACED=/work/wt-unpaced/target/release/pubsubd \
        bench/compare.py ejabberd --targets pubsubd,unpaced,builtin --only mixed

A target other than pubsubd and builtin is another pubsubd binary started
beside the first (its own JID and database, the same settings): give its path
with `--binary NAME=PATH`, or for `unpaced` with PUBSUBD_UNPACED. Each table
row then has every build and the built-in service from the same server.

Needs `cargo build --release -p pubsubd -p pubsubd-bench` first (the binaries
are looked up in target/release next to this repository).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOAD = os.path.join(ROOT, "target", "release", "pubsubd-load")
PUBSUBD = os.path.join(ROOT, "target", "release", "pubsubd")

# Every scenario in its full and smoke sizes. `route` measures the ceiling
# with the very notification a 1.5 KB item makes (shape `event`: what the
# fan-out is compared to), and plain headlines of 200 B, 1.5 KB and 2 KB for
# reference.
FULL = {
    "route": {"clients": 100, "messages": 100_000, "sizes": [200, 1500, 2000]},
    "firehose": {"nodes": 1, "subscribers": 1000, "items": 200, "window": 16},
    "wide": {"nodes": 1, "subscribers": 10_000, "items": 20, "window": 16},
    "publishes": {"nodes": 1, "subscribers": 10, "items": 20_000, "window": 64},
    "nodes": {"nodes": 10_000, "subscribers": 1000, "per_node": 10, "items": 20_000, "window": 64},
    "state": {"subscriptions": 1_000_000, "items": 1_000_000, "state_nodes": 1000,
              "fanout_subscriptions": 100_000, "fanout_items": 3, "probes": 200},
    # #18: a 5-subscriber node published at 10/s while a 2,000 x 200 firehose runs,
    # and the same small node alone for `alone_seconds` (the baseline).
    "mixed": {"subscribers": 2000, "items": 200, "window": 16, "small": 5, "rate": 10,
              "alone_seconds": 10},
    # #19: 100 leaves x 10 subscribers below one collection with 1,000 subscribers of
    # its own, against one node with the same 1,010 subscribers per item (pubsubd only;
    # virtual subscribers of the sink component).
    "collection": {"leaves": 100, "per_leaf": 10, "collection_subscribers": 1000, "items": 200,
                   "window": 16},
}
SMOKE = {
    "route": {"clients": 20, "messages": 5000, "sizes": []},
    "firehose": {"nodes": 1, "subscribers": 50, "items": 40, "window": 16},
    "wide": {"nodes": 1, "subscribers": 200, "items": 5, "window": 16},
    "publishes": {"nodes": 1, "subscribers": 10, "items": 1000, "window": 64},
    "nodes": {"nodes": 100, "subscribers": 20, "per_node": 5, "items": 500, "window": 64},
    "state": {"subscriptions": 20_000, "items": 20_000, "state_nodes": 20,
              "fanout_subscriptions": 2000, "fanout_items": 2, "probes": 20},
    "mixed": {"subscribers": 100, "items": 40, "window": 16, "small": 5, "rate": 10,
              "alone_seconds": 5},
    "collection": {"leaves": 10, "per_leaf": 5, "collection_subscribers": 50, "items": 40,
                   "window": 16},
}
FANOUT_SCENARIOS = ["firehose", "wide", "publishes", "nodes"]
# The testkit's XEP-0033 service (ejabberd's mod_multicast, on Prosody the module
# pubsubd ships in deploy/prosody/); pubsubd's default multicast_limit.
MULTICAST = "multicast.localhost"
MULTICAST_GROUP = 100


def log(*args):
    print(*args, file=sys.stderr, flush=True)


# Before each run, wait until the server (and pubsubd) are quiet: after a route test to
# 10,000 sessions ejabberd went on working for tens of seconds (sessions closing with
# messages still queued), and a run started meanwhile measured that: one 1,000-session
# route run delivered half its messages. Quiet: under QUIET_SHARE of a core over one
# QUIET_SAMPLE_S sample; given up after QUIET_LIMIT_S.
QUIET_SHARE = 0.10
QUIET_SAMPLE_S = 1.0
QUIET_LIMIT_S = 180
QUIET_PIDS = []


def cpu_ticks(pid):
    """utime + stime of a process in clock ticks, or None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except (OSError, IndexError, ValueError):
        return None


def wait_for_quiet():
    """Waits until every process of QUIET_PIDS uses under QUIET_SHARE of a core."""
    hz = os.sysconf("SC_CLK_TCK")
    started = time.monotonic()
    while time.monotonic() - started < QUIET_LIMIT_S:
        before = {pid: cpu_ticks(pid) for pid in QUIET_PIDS}
        time.sleep(QUIET_SAMPLE_S)
        busy = [pid for pid, t in before.items()
                if t is not None and (cpu_ticks(pid) or t) - t > QUIET_SHARE * QUIET_SAMPLE_S * hz]
        if not busy:
            waited = time.monotonic() - started
            if waited > 2 * QUIET_SAMPLE_S:
                log(f"  (waited {waited:.0f} s for the server to go quiet)")
            return
    log(f"  (still busy after {QUIET_LIMIT_S} s; running anyway)")


def run_json(args, timeout):
    """Runs pubsubd-load with --json; returns the parsed report or an error dict."""
    wait_for_quiet()
    log("  $", " ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(args)))
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s"}
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        # anyhow prints "Error: ..." first, then causes and a backtrace.
        said = [l for l in lines if l.startswith("Error:")] or lines[-1:] or ["exit %d" % done.returncode]
        return {"error": said[0][:500]}
    try:
        return json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"error": "unparsable output: " + done.stdout[-300:]}


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def dig(report, path):
    value = report
    for key in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def summarize(reports, path):
    return median([dig(r, path) for r in reports if "error" not in r])


def ratio(a, b):
    if a is None or b in (None, 0):
        return None
    return a / b


def fmt(value, digits=0):
    if value is None:
        return "-"
    if isinstance(value, float) and digits:
        return f"{value:.{digits}f}"
    return f"{value:,.0f}" if isinstance(value, (int, float)) else str(value)


def fmt_load(load):
    return " / ".join(f"{x:.2f}" for x in load) if load else "-"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("server", choices=["prosody", "ejabberd"])
    parser.add_argument("--smoke", action="store_true", help="small sizes (CI)")
    parser.add_argument("--runs", type=int, default=2, help="runs per scenario and target (median)")
    parser.add_argument("--only", default="", help="comma-separated scenarios: route," + ",".join(FANOUT_SCENARIOS)
                        + ",mixed,collection,state")
    parser.add_argument("--json", help="also write all raw reports and the summary here")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per single run")
    parser.add_argument("--connections", type=int, default=1,
                        help="component connections pubsubd opens (ejabberd balances several)")
    parser.add_argument("--fanout-workers", type=int, default=None,
                        help="pubsubd's fanout_workers (default: pubsubd's default)")
    parser.add_argument("--route-messages", type=int, default=None,
                        help="messages per route run (default: 100,000 full, 5,000 smoke); "
                             "Prosody routes ~1,500/s, so 20,000 keeps its route runs short")
    parser.add_argument("--multicast", action="store_true",
                        help="pubsubd sends through the server's XEP-0033 service (its `multicast` "
                             "setting: mod_multicast on ejabberd, mod_pubsubd_multicast on Prosody), "
                             "and the route test measures that path's ceiling too")
    parser.add_argument("--no-multicast", action="store_true",
                        help="pubsubd runs with `multicast = \"off\"` (one stanza per subscriber)")
    parser.add_argument("--targets", default="pubsubd,builtin",
                        help="fan-out targets; without pubsubd no pubsubd is started (baselines only); "
                             "any other name is a further pubsubd binary (--binary)")
    parser.add_argument("--binary", action="append", default=[], metavar="NAME=PATH",
                        help="the pubsubd binary of target NAME (default for `unpaced`: $PUBSUBD_UNPACED)")
    parser.add_argument("--mixed-subscribers", type=int, default=None,
                        help="the mixed scenario's firehose subscribers (default 2,000 full, 100 smoke)")
    parser.add_argument("--mixed-items", type=int, default=None,
                        help="the mixed scenario's firehose items (default 200 full, 40 smoke)")
    parser.add_argument("--sizes", default="",
                        help="override sizes, e.g. firehose.subscribers=500,wide.subscribers=2000")
    args = parser.parse_args()

    sizes = {name: dict(s) for name, s in (SMOKE if args.smoke else FULL).items()}
    if args.mixed_subscribers:
        sizes["mixed"]["subscribers"] = args.mixed_subscribers
    if args.mixed_items:
        sizes["mixed"]["items"] = args.mixed_items
    for setting in filter(None, args.sizes.split(",")):
        path, value = setting.split("=", 1)
        name, field = path.split(".", 1)
        sizes[name][field] = int(value)
    if args.route_messages:
        sizes = {**sizes, "route": {**sizes["route"], "messages": args.route_messages}}
    only = set(filter(None, args.only.split(","))) or set(sizes)
    targets = [t for t in args.targets.split(",") if t]
    with_pubsubd = "pubsubd" in targets
    if not with_pubsubd:
        only.discard("state")
        only.discard("collection")
    for binary in (LOAD, PUBSUBD) if with_pubsubd else (LOAD,):
        if not os.path.exists(binary):
            sys.exit(f"missing {binary}: run cargo build --release -p pubsubd -p pubsubd-bench")
    binaries = dict(b.split("=", 1) for b in args.binary)
    if os.environ.get("PUBSUBD_UNPACED"):
        binaries.setdefault("unpaced", os.environ["PUBSUBD_UNPACED"])
    extras = [t for t in targets if t not in ("pubsubd", "builtin")]
    if extras and not with_pubsubd:
        sys.exit(f"targets {','.join(extras)} run beside pubsubd: add pubsubd to --targets")
    for name in extras:
        if not os.path.exists(binaries.get(name, "")):
            sys.exit(f"target {name}: no binary (--binary {name}=PATH"
                     f"{' or PUBSUBD_UNPACED' if name == 'unpaced' else ''})")

    workdir = tempfile.mkdtemp(prefix="pubsubd-compare-")
    env_file = os.path.join(workdir, "env.json")
    log(f"starting {args.server} + PostgreSQL + pubsubd ...")
    pubsubd_args = (["--pubsubd", PUBSUBD, "--connections", str(args.connections)]
                    + (["--fanout-workers", str(args.fanout_workers)] if args.fanout_workers else [])
                    + (["--multicast", MULTICAST] if args.multicast else [])
                    + (["--multicast", "off"] if args.no_multicast else [])
                    + [a for name in extras for a in ("--extra-pubsubd", f"{name}={binaries[name]}")]
                    if with_pubsubd else ["--no-pubsubd"])
    serve = subprocess.Popen([LOAD, "serve-env", "--server", args.server, *pubsubd_args,
                              "--env-file", env_file],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    line = serve.stdout.readline()
    if not line:
        sys.exit("serve-env failed to start the environment")
    env = json.loads(line)
    log(f"  c2s {env['c2s']}, component {env['component']}, server pid {env['server_pid']}, "
        f"pubsubd {env['pubsubd_jid']} pid {env['pubsubd_pid']}")

    QUIET_PIDS.extend(pid for pid in (env.get("server_pid"), env.get("pubsubd_pid")) if pid)
    QUIET_PIDS.extend(e["pid"] for e in env.get("extra_pubsubd", []))
    for e in env.get("extra_pubsubd", []):
        log(f"  {e['name']}: {e['jid']} pid {e['pid']} ({binaries[e['name']]})")
    results = {"server": args.server, "env": env, "smoke": args.smoke, "runs": args.runs, "started": time.time(),
               "connections": args.connections, "multicast": args.multicast, "no_multicast": args.no_multicast,
               "targets": targets, "binaries": binaries, "sizes": sizes, "load_before": os.getloadavg(),
               "raw": {}, "summary": {}}
    common = ["--env", env_file, "--json"]
    if args.smoke:
        common += ["--settle", "5"]
    # Prosody's built-in service stores items slowly (tens of ms per publish,
    # growing with the node), so publishing is bounded in time everywhere.
    publish_limit = ["--max-publish-seconds", "20" if args.smoke else "120"]
    try:
        ceiling_1500 = None
        ceiling_runs = []
        scenario_ceilings = {}
        bare_ceilings = {}
        if "route" in only:
            r = sizes["route"]

            def route(shape, size, k, clients, multicast=False, to="full", around=None):
                key = f"route shape={shape} size={size} connections={k} clients={clients}"
                if to != "full":
                    key += f" to={to}"
                if multicast:
                    key += f" multicast={MULTICAST_GROUP}"
                if around:
                    key += f" {around}"
                if key in results["summary"]:
                    return key, results["raw"][key]
                log(key)
                through = ["--multicast", MULTICAST, "--multicast-group", str(MULTICAST_GROUP)] if multicast else []
                reports = [run_json([LOAD, "route", *common, "--clients", str(clients),
                                     "--messages", str(r["messages"]), "--size", str(size),
                                     "--shape", shape, "--connections", str(k), "--to", to, *through,
                                     "--user-prefix", f"route{clients}-"], args.timeout)
                           for _ in range(args.runs)]
                results["raw"][key] = reports
                results["summary"][key] = {
                    "delivered_per_s": summarize(reports, "delivered_per_s"),
                    "lost": summarize(reports, "lost"),
                    "server_cpu_s": summarize(reports, "cpu.server_s"),
                    "load_cpu_s": summarize(reports, "cpu.load_s"),
                    "machine_busy": summarize(reports, "cpu.machine_busy"),
                    "errors": [r["error"] for r in reports if "error" in r],
                }
                return key, reports

            # (shape, size, connections): the event ceiling with every connection
            # count the server balances, plain headlines with one.
            counts = [1, 2, 4] if args.server == "ejabberd" else [1]
            cases = [("event", 1500, k) for k in counts] + [("body", size, 1) for size in r["sizes"]]
            for shape, size, k in cases:
                _, reports = route(shape, size, k, r["clients"])
                if shape == "event" and k == args.connections:
                    ceiling_runs += [r.get("delivered_per_s") for r in reports if "error" not in r]
            # The ceiling the fan-out is compared with: the server routing the
            # notification pubsubd sends for a 1.5 KB item, over as many
            # component connections as pubsubd opens ...
            ceiling_1500 = median(ceiling_runs)
            results["summary"]["ceiling"] = ceiling_1500
            # ... and to as many sessions as each scenario has subscribers (a server
            # routes more slowly to 10,000 sessions than to 100), measured just before
            # and just after each scenario, below, and the two averaged. A server gets
            # slower as runs follow one another on it: a route run to 10,000 sessions
            # left Prosody spending 1.18 ms of CPU per notification in the firehose
            # after it (0.45 ms without), and even alternating route and fan-out runs
            # of 1,000 sessions Prosody spent 211, 214, 230 and 230 µs per
            # notification, so a ceiling measured only before a scenario reads high
            # and one measured up front higher still.
            measured = {}

            def scenario_ceiling(name, when):
                around = f"{when}={name}"
                key, _ = route("event", 1500, args.connections, sizes[name]["subscribers"],
                               around=around)
                # pubsubd addresses a bare-JID subscription by its bare JID, which
                # the server routes at its own cost: the same ceiling that way.
                bare_key, _ = route("event", 1500, args.connections, sizes[name]["subscribers"],
                                    to="bare", around=around)
                full, bare = measured.setdefault(name, ([], []))
                for runs, k in ((full, key), (bare, bare_key)):
                    value = results["summary"][k]["delivered_per_s"]
                    if value is not None:
                        runs.append(value)
                scenario_ceilings[name] = statistics.mean(full) if full else None
                bare_ceilings[name] = statistics.mean(bare) if bare else None
                if when != "before":
                    return
                # The multicast path's own ceiling, for reference: pubsubd's
                # ×ceiling stays against the one-by-one route. Not to 10,000
                # sessions: the route test writes all its stanzas at once, which
                # mod_multicast then delivers at a fraction of its rate, and the
                # runs after it on the same server are slower too.
                if args.multicast and sizes[name]["subscribers"] <= 1000:
                    route("event", 1500, 1, sizes[name]["subscribers"], multicast=True,
                          around=around)
            results["summary"]["scenario_ceilings"] = scenario_ceilings
            results["summary"]["bare_ceilings"] = bare_ceilings

        for name in FANOUT_SCENARIOS:
            if name not in only:
                continue
            if "route" in only:
                scenario_ceiling(name, "before")
            s = sizes[name]
            for target in targets:
                key = f"{name} {target}"
                log(key)
                cmd = [LOAD, "fanout", *common, "--target", target, "--nodes", str(s["nodes"]),
                       "--subscribers", str(s["subscribers"]), "--items", str(s["items"]),
                       "--window", str(s["window"]), "--user-prefix", f"{name}-", *publish_limit]
                if "per_node" in s:
                    cmd += ["--per-node", str(s["per_node"])]
                reports = [run_json(cmd, args.timeout) for _ in range(args.runs)]
                results["raw"][key] = reports
                results["summary"][key] = {
                    field: summarize(reports, path) for field, path in [
                        ("acks_per_s", "acks_per_s"), ("ack_p99_ms", "ack_latency.p99_ms"),
                        ("delivered_per_s", "delivered_per_s"), ("latency_p50_ms", "latency.p50_ms"),
                        ("latency_p99_ms", "latency.p99_ms"), ("lost", "lost"), ("duplicates", "duplicates"),
                        ("server_cpu_s", "cpu.server_s"), ("pubsubd_cpu_s", "cpu.pubsubd_s"),
                        ("load_cpu_s", "cpu.load_s"), ("postgres_cpu_s", "cpu.postgres_s"),
                        ("machine_busy", "cpu.machine_busy"), ("pubsubd_rss_mib", "peak_rss.pubsubd_mib"),
                        ("subscribe_s", "subscribe_s")]
                }
                results["summary"][key]["errors"] = [r["error"] for r in reports if "error" in r]
            if "route" in only:
                scenario_ceiling(name, "after")

        if "mixed" in only:
            s = sizes["mixed"]
            for target in targets:
                # Prosody's built-in service lets only its admin create nodes; pubsubd's
                # small node has a publisher of its own (another sender, another lane).
                small_publisher = ["--small-publisher", "admin"] if target == "builtin" else []
                cmd = [LOAD, "mixed", *common, "--target", target, "--small-subscribers", str(s["small"]),
                       "--small-rate", str(s["rate"]), "--user-prefix", "mixed-", *small_publisher]
                for alone in (False, True):
                    key = f"mixed{'-alone' if alone else ''} {target}"
                    log(key)
                    this = cmd + (["--alone", "--alone-seconds", str(s["alone_seconds"])] if alone else
                                  ["--firehose-subscribers", str(s["subscribers"]), "--firehose-items",
                                   str(s["items"]), "--window", str(s["window"]), *publish_limit])
                    reports = [run_json(this, args.timeout) for _ in range(args.runs)]
                    results["raw"][key] = reports
                    results["summary"][key] = {
                        field: summarize(reports, path) for field, path in [
                            ("small_p50_ms", "small.latency.p50_ms"), ("small_p99_ms", "small.latency.p99_ms"),
                            ("small_ack_p99_ms", "small.ack_latency.p99_ms"), ("small_acked", "small.acked"),
                            ("small_lost", "small.lost"), ("firehose_per_s", "firehose.delivered_per_s"),
                            ("firehose_ack_p99_ms", "firehose.ack_latency.p99_ms"),
                            ("firehose_lost", "firehose.lost"), ("machine_busy", "small.cpu.machine_busy")]
                    }
                    results["summary"][key]["errors"] = [r["error"] for r in reports if "error" in r]

        if "collection" in only:
            s = sizes["collection"]
            per_item = s["per_leaf"] + s["collection_subscribers"]
            shapes = {
                # The leaves' subscribers first (round robin, per_leaf each), then the
                # collection's, each its own virtual user.
                "collection": ["--nodes", str(s["leaves"]), "--subscribers", str(s["leaves"] * s["per_leaf"]),
                               "--per-node", str(s["per_leaf"]),
                               "--collection-subscribers", str(s["collection_subscribers"])],
                "collection-baseline": ["--nodes", "1", "--subscribers", str(per_item)],
            }
            for key, shape in shapes.items():
                log(f"{key} pubsubd")
                cmd = [LOAD, "fanout", *common, "--target", "pubsubd", "--virtual", *shape,
                       "--items", str(s["items"]), "--window", str(s["window"]), *publish_limit]
                reports = [run_json(cmd, args.timeout) for _ in range(args.runs)]
                results["raw"][f"{key} pubsubd"] = reports
                results["summary"][f"{key} pubsubd"] = {
                    field: summarize(reports, path) for field, path in [
                        ("delivered_per_s", "delivered_per_s"), ("expected", "expected"),
                        ("delivered", "delivered"), ("lost", "lost"), ("duplicates", "duplicates"),
                        ("latency_p99_ms", "latency.p99_ms"), ("pubsubd_cpu_s", "cpu.pubsubd_s"),
                        ("machine_busy", "cpu.machine_busy")]
                }
                results["summary"][f"{key} pubsubd"]["errors"] = [r["error"] for r in reports if "error" in r]

        if "state" in only:
            s = sizes["state"]
            log("state pubsubd")
            cmd = [LOAD, "state", *common, "--subscriptions", str(s["subscriptions"]), "--items", str(s["items"]),
                   "--nodes", str(s["state_nodes"]), "--fanout-subscriptions", str(s["fanout_subscriptions"]),
                   "--fanout-items", str(s["fanout_items"]), "--probes", str(s["probes"])]
            reports = [run_json(cmd, args.timeout) for _ in range(args.runs)]
            results["raw"]["state pubsubd"] = reports
            results["summary"]["state pubsubd"] = {
                field: summarize(reports, path) for field, path in [
                    ("subscribe_p99_ms", "subscribe_latency.p99_ms"), ("retrieve_p99_ms", "retrieve_latency.p99_ms"),
                    ("fanout_delivered_per_s", "fanout.delivered_per_s"), ("fanout_lost", "fanout.lost"),
                    ("pubsubd_peak_rss_mib", "fanout.peak_rss.pubsubd_mib"), ("insert_s", "insert_s")]
            }
            results["summary"]["state pubsubd"]["errors"] = [r["error"] for r in reports if "error" in r]
    finally:
        serve.stdin.close()
        try:
            serve.wait(timeout=60)
        except subprocess.TimeoutExpired:
            serve.kill()

    results["load_after"] = os.getloadavg()
    print_tables(results, ceiling_1500, scenario_ceilings, bare_ceilings)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


def print_tables(results, ceiling, scenario_ceilings, bare_ceilings):
    summary = results["summary"]
    print(f"\n## {results['server']} ({'smoke' if results['smoke'] else 'full'} sizes, "
          f"median of {results['runs']} runs"
          f"{', pubsubd through ' + MULTICAST if results.get('multicast') else ''})\n")
    routes = [k for k in summary if k.startswith("route")]
    if ceiling:
        print(f"ceiling (median of route runs, notifications of a 1.5 KB item, "
              f"{results['connections']} connection(s)): {ceiling:,.0f} msgs/s\n")
    if routes:
        print("| route ceiling | msgs/s received | lost | server CPU s | load CPU s | machine busy |")
        print("|---|---:|---:|---:|---:|---:|")
        for key in routes:
            s = summary[key]
            print(f"| {key[6:]} | {fmt(s['delivered_per_s'])} | {fmt(s['lost'])} | "
                  f"{fmt(s['server_cpu_s'], 2)} | {fmt(s['load_cpu_s'], 2)} | {fmt(s.get('machine_busy'), 2)} |")
        print()
    # ×ceiling: against the route ceiling to as many sessions as the scenario has
    # subscribers; ×bare: the same, each message addressed to the session's bare
    # JID as pubsubd addresses its subscribers; ×ceiling100: against the one to
    # the route test's 100 sessions.
    targets = results.get("targets", ["pubsubd", "builtin"])
    if any(f"{name} {t}" in summary for name in FANOUT_SCENARIOS for t in targets):
        print_fanout(summary, targets, ceiling, scenario_ceilings, bare_ceilings)
    print_mixed(summary, targets)
    print_collection(summary)
    print(f"\nload average (1, 5, 15 min) before: {fmt_load(results.get('load_before'))}, "
          f"after: {fmt_load(results.get('load_after'))}")
    print_state(results)


def print_collection(summary):
    coll, base = summary.get("collection pubsubd"), summary.get("collection-baseline pubsubd")
    if not coll or not base:
        return
    print("\n| collection (#19) | notif/s | expected | delivered | lost | duplicates | p99 ms | "
          "pubsubd CPU s | machine busy |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for label, s in (("leaves below a collection", coll), ("one node, same notifications", base)):
        print(f"| {label} | {fmt(s['delivered_per_s'])} | {fmt(s['expected'])} | {fmt(s['delivered'])} | "
              f"{fmt(s['lost'])} | {fmt(s['duplicates'])} | {fmt(s['latency_p99_ms'], 1)} | "
              f"{fmt(s['pubsubd_cpu_s'], 2)} | {fmt(s.get('machine_busy'), 2)} |")
    print(f"\ncollection rate / one-node rate: {fmt(ratio(coll['delivered_per_s'], base['delivered_per_s']), 3)}")


def print_fanout(summary, targets, ceiling, scenario_ceilings, bare_ceilings):
    print("| scenario | target | acks/s | ack p99 ms | notif/s | ceiling | ×ceiling | ×bare | ×ceiling100 | ×built-in "
          "| ×unpaced | p50 ms | p99 ms | lost | dup | server CPU s | pubsubd CPU s | PostgreSQL CPU s | load CPU s "
          "| machine busy | pubsubd RSS MiB |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name in FANOUT_SCENARIOS:
        builtin = summary.get(f"{name} builtin", {})
        unpaced = summary.get(f"{name} unpaced", {})
        for target in targets:
            s = summary.get(f"{name} {target}")
            if not s:
                continue
            field = "acks_per_s" if name == "publishes" else "delivered_per_s"
            vs_builtin = ratio(s[field], builtin.get(field)) if target != "builtin" else None
            vs_unpaced = ratio(s[field], unpaced.get(field)) if target not in ("builtin", "unpaced") else None
            own = scenario_ceilings.get(name)
            print(f"| {name} | {target} | {fmt(s['acks_per_s'])} | {fmt(s['ack_p99_ms'], 1)} | "
                  f"{fmt(s['delivered_per_s'])} | {fmt(own)} | {fmt(ratio(s['delivered_per_s'], own), 2)} | "
                  f"{fmt(ratio(s['delivered_per_s'], bare_ceilings.get(name)), 2)} | "
                  f"{fmt(ratio(s['delivered_per_s'], ceiling), 2)} | {fmt(vs_builtin, 2)} | {fmt(vs_unpaced, 2)} | "
                  f"{fmt(s['latency_p50_ms'], 1)} | {fmt(s['latency_p99_ms'], 1)} | "
                  f"{fmt(s['lost'])} | {fmt(s['duplicates'])} | {fmt(s['server_cpu_s'], 2)} | "
                  f"{fmt(s['pubsubd_cpu_s'], 2)} | {fmt(s.get('postgres_cpu_s'), 2)} | {fmt(s['load_cpu_s'], 2)} | "
                  f"{fmt(s.get('machine_busy'), 2)} | {fmt(s['pubsubd_rss_mib'], 1)} |")
            for error in s.get("errors", []):
                print(f"|   | error: {error} |")


def print_mixed(summary, targets):
    mixed = [k for k in summary if k.startswith("mixed")]
    if mixed:
        print("\n| mixed | target | small p50 ms | small p99 ms | small ack p99 ms | small acked | small lost "
              "| firehose notif/s | ×unpaced | ×built-in | firehose ack p99 ms | firehose lost | machine busy |")
        print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for kind in ("mixed", "mixed-alone"):
            unpaced = summary.get(f"{kind} unpaced", {}).get("firehose_per_s")
            builtin = summary.get(f"{kind} builtin", {}).get("firehose_per_s")
            for target in targets:
                s = summary.get(f"{kind} {target}")
                if not s:
                    continue
                own = s["firehose_per_s"]
                print(f"| {kind} | {target} | {fmt(s['small_p50_ms'], 1)} | {fmt(s['small_p99_ms'], 1)} | "
                      f"{fmt(s['small_ack_p99_ms'], 1)} | {fmt(s['small_acked'])} | {fmt(s['small_lost'])} | "
                      f"{fmt(own)} | {fmt(ratio(own, unpaced) if target != 'unpaced' else None, 2)} | "
                      f"{fmt(ratio(own, builtin) if target != 'builtin' else None, 2)} | "
                      f"{fmt(s['firehose_ack_p99_ms'], 1)} | {fmt(s['firehose_lost'])} | "
                      f"{fmt(s.get('machine_busy'), 2)} |")
                for error in s.get("errors", []):
                    print(f"|   | error: {error} |")


def print_state(results):
    summary = results["summary"]
    state = summary.get("state pubsubd")
    if state:
        print("\n| state (pubsubd) | subscribe p99 ms | retrieve p99 ms | fan-out notif/s | lost "
              "| pubsubd peak RSS MiB | SQL insert s |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        print(f"| {results['server']} | {fmt(state['subscribe_p99_ms'], 1)} | {fmt(state['retrieve_p99_ms'], 1)} | "
              f"{fmt(state['fanout_delivered_per_s'])} | {fmt(state['fanout_lost'])} | "
              f"{fmt(state['pubsubd_peak_rss_mib'], 1)} | {fmt(state['insert_s'], 1)} |")
        for error in state.get("errors", []):
            print(f"| error: {error} |")


if __name__ == "__main__":
    main()
