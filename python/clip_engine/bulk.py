"""python -m clip_engine.bulk: WebDataset shards to clip-retrieval's layout, on this machine
or on a Ray cluster.

    python -m clip_engine.bulk --input 'shards/{00000..00999}.tar' --output out/ --model M \\
        [--distributor local|ray] [--ray-address ADDR] [--workers N] [--gpus-per-worker G] \\
        [--cpus-per-worker C] [--shard-index I --shard-count C]

Each shard is one task and one output part, embedded by the same C++ function as `clip embed
--webdataset` (clip/webdataset.h, through the binding: the model is loaded once per worker and
the part is bitwise the CLI's). Parts already complete are skipped, so a rerun finishes only
what is missing. A metadata_N.jsonl becomes metadata_N.parquet (clip-retrieval's format) when
pyarrow is installed; without it the JSON Lines stay.

local: one engine in this process, shard after shard.
ray: an actor per worker (``--workers``, each with ``--gpus-per-worker`` GPUs and
``--cpus-per-worker`` CPUs), each loading the model once; the driver hands one shard at a time
to each idle actor. When an actor dies (its process killed, its node lost) its shard goes back
to the front of the queue for the next idle actor and a new actor takes the dead one's place;
a shard that has killed 3 actors is reported and left. Ray Core actors rather than Ray Data:
a shard is one unit whose output its worker writes itself, so a dataset pipeline would add
nothing but hide the retries. The model, shards and output folder must be at the same paths
on every node (a shared file system).

Progress goes to stderr: a line per shard done with shards and samples done, samples/s and
the ETA. Exit status: 0, or 3 when any sample or shard failed.
"""
import argparse
import json
import os
import sys
import time

from . import _core
from ._errors import Error

_MAX_TRIES = 3


def _parquet_from_jsonl(out, part):
    """metadata_N.jsonl -> metadata_N.parquet (written to a temporary name and renamed, then the
    .jsonl removed). Columns in order of first appearance; a column whose values pyarrow cannot
    give one type is written as JSON text, and said so."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    src = os.path.join(out, "metadata", f"metadata_{part}.jsonl")
    dst = os.path.join(out, "metadata", f"metadata_{part}.parquet")
    with open(src, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    names = ["image_path", "caption"]
    for r in rows:
        names.extend(k for k in r if k not in names)
    names = [n for n in names if n != "error"] + ["error"]
    columns = {}
    for n in names:
        values = [r.get(n) for r in rows]
        try:
            columns[n] = pa.array(values, type=pa.string() if n in ("image_path", "caption", "error") else None)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            print(f"bulk: part {part}: column {n} mixes types; written as JSON text", file=sys.stderr)
            columns[n] = pa.array([None if v is None else json.dumps(v) for v in values], type=pa.string())
    tmp = f"{dst}.tmp-{os.uname().nodename}-{os.getpid()}"
    pq.write_table(pa.table(columns), tmp)
    os.replace(tmp, dst)
    os.remove(src)


def _have_pyarrow():
    try:
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        return False
    return True


def _finish_metadata(out, part):
    """A complete part's JSON Lines as Parquet when pyarrow is there (also one a killed run
    left between the two)."""
    if _have_pyarrow() and os.path.exists(os.path.join(out, "metadata", f"metadata_{part}.jsonl")):
        _parquet_from_jsonl(out, part)


def _embed_one(model, shard, out, part):
    """One shard into its part, unless it is complete; the shard's result dict."""
    if _core.part_complete(out, part):
        _finish_metadata(out, part)
        return {"written": False, "skipped": True, "samples": 0, "failed": 0, "shard_error": "", "stopped": False}
    r = dict(model.embed_shard(shard, out, part))
    r["skipped"] = False
    if r["written"]:
        _finish_metadata(out, part)
    return r


def _load(args):
    from ._model import load

    return load(args.model, device=args.device, dtype=args.dtype, vocab=args.vocab,
                batch_size=args.batch_size)._m


class _Progress:
    def __init__(self, total):
        self.total, self.done, self.samples, self.failed, self.bad_shards = total, 0, 0, 0, []
        self.start = time.monotonic()

    def add(self, shard, part, r):
        self.done += 1
        self.samples += r.get("samples", 0)
        self.failed += r.get("failed", 0)
        if r.get("shard_error"):
            self.bad_shards.append(shard)
            print(f"bulk: shard error: {r['shard_error']}"
                  f"{' (the samples before it are in the part)' if r.get('written') else ' (no part written)'}",
                  file=sys.stderr)
        sec = time.monotonic() - self.start
        rate = self.samples / sec if sec > 0 else 0.0
        eta = (self.total - self.done) * sec / self.done if self.done else 0.0
        print(f"bulk: {self.done}/{self.total} shards ({shard} -> part {part}), {self.samples} samples "
              f"({self.failed} failed), {rate:.1f} samples/s, ETA {eta:.0f}s", file=sys.stderr, flush=True)


def _run_local(args, plan, todo, progress):
    model = _load(args)
    for i in todo:
        r = _embed_one(model, plan["shards"][i], args.output, plan["parts"][i])
        if r.get("stopped"):
            raise KeyboardInterrupt
        progress.add(plan["shards"][i], plan["parts"][i], r)


def _run_ray(args, plan, todo, progress):
    import ray

    env = {"OMP_NUM_THREADS": str(args.cpus_per_worker)} if args.cpus_per_worker else {}
    ray.init(address=args.ray_address, runtime_env={"env_vars": env} if env else None,
             log_to_driver=False, logging_level="WARNING")

    @ray.remote(num_gpus=args.gpus_per_worker, num_cpus=args.cpus_per_worker or 1, max_restarts=0)
    class Worker:
        def __init__(self):
            self.model = _load(args)

        def where(self):
            return os.getpid(), ray.get_runtime_context().get_node_id()

        def embed(self, shard, part):
            return _embed_one(self.model, shard, args.output, part)

    def start_worker():
        w = Worker.remote()
        pid, node = ray.get(w.where.remote())
        print(f"bulk: worker pid {pid} on node {node[:12]}", file=sys.stderr, flush=True)
        return w

    queue = list(todo)
    tries = {i: 0 for i in todo}
    idle = [start_worker() for _ in range(args.workers)]
    running = {}  # future -> (worker, shard index)
    while queue or running:
        while queue and idle:
            w, i = idle.pop(), queue.pop(0)
            tries[i] += 1
            running[w.embed.remote(plan["shards"][i], plan["parts"][i])] = (w, i)
        done, _ = ray.wait(list(running), num_returns=1)
        w, i = running.pop(done[0])
        try:
            r = ray.get(done[0])
        except ray.exceptions.RayActorError as e:
            shard = plan["shards"][i]
            if tries[i] < _MAX_TRIES:
                print(f"bulk: the worker running {shard} died ({type(e).__name__}); the shard goes to another",
                      file=sys.stderr, flush=True)
                queue.insert(0, i)
            else:
                print(f"bulk: {shard} killed {tries[i]} workers; left undone", file=sys.stderr, flush=True)
                progress.add(shard, plan["parts"][i], {"shard_error": f"{shard}: killed {tries[i]} workers"})
            idle.append(start_worker())
            continue
        idle.append(w)
        progress.add(plan["shards"][i], plan["parts"][i], r)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m clip_engine.bulk", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input", nargs="+", required=True, action="extend",
                   help="shard patterns, quoted: 'shards/{00000..00999}.tar' (plain or gzip tar)")
    p.add_argument("--output", required=True, help="output folder (clip-retrieval's layout)")
    p.add_argument("--model", required=True, help="any checkpoint the clip tool reads")
    p.add_argument("--vocab", default=None)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--dtype", default="auto", choices=["auto", "f32", "f16", "bf16"])
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--distributor", default="local", choices=["local", "ray"])
    p.add_argument("--ray-address", default=None, help="a running cluster (auto, or HOST:PORT); default: start one here")
    p.add_argument("--workers", type=int, default=1, help="ray: actors, each with its own engine")
    p.add_argument("--gpus-per-worker", type=float, default=0)
    p.add_argument("--cpus-per-worker", type=int, default=0, help="ray: CPUs (and OpenMP threads) per actor; 0: all")
    p.add_argument("--shard-index", type=int, default=-1)
    p.add_argument("--shard-count", type=int, default=-1)
    args = p.parse_args(argv)
    if args.distributor == "local" and (args.workers != 1 or args.ray_address):
        p.error("--workers and --ray-address go with --distributor ray (local runs one engine)")
    if args.workers < 1:
        p.error("--workers must be at least 1")
    args.output = os.path.abspath(args.output)
    args.model = os.path.abspath(args.model) if os.path.exists(args.model) else args.model
    try:
        plan = _core.shard_plan([os.path.abspath(x) for x in args.input], args.shard_index, args.shard_count)
    except Error as e:
        print(f"bulk: error: {e}", file=sys.stderr)
        return 1
    mine = plan["selected"]
    todo = []
    for i in mine:
        if _core.part_complete(args.output, plan["parts"][i]):
            _finish_metadata(args.output, plan["parts"][i])
        else:
            todo.append(i)
    print(f"bulk: {len(plan['shards'])} shards; task {plan['index']} of {plan['count']} ({plan['source']}): "
          f"{len(mine)}, of which {len(mine) - len(todo)} complete in {args.output}, {len(todo)} to do"
          f"{'' if _have_pyarrow() else '; no pyarrow: metadata stays JSON Lines'}", file=sys.stderr, flush=True)
    progress = _Progress(len(todo))
    if todo:
        try:
            (_run_ray if args.distributor == "ray" else _run_local)(args, plan, todo, progress)
        except KeyboardInterrupt:
            print("bulk: interrupted; the parts written are complete (run again to do the rest)", file=sys.stderr)
            return 130
    return 3 if progress.failed or progress.bad_shards else 0


if __name__ == "__main__":
    sys.exit(main())
