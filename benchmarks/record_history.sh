#!/usr/bin/env bash
# Record real asv results for HEAD and its first parent (when the clone has
# it) in asv's own virtualenv environment (numpy + numba from the package
# index, the package built from each commit), publish them, and check that
# the published site holds a graph with a point for HEAD (and for the parent,
# which is only warned about: a broken older commit does not fail this run).
#
#   benchmarks/record_history.sh [extra `asv run` arguments]
#
# Environment:
#   PYTHON               interpreter with asv installed (default: python)
#   ASV_HISTORY_DIR      where results, html and the derived config go
#                        (default: .asv/ci, apart from the developers' .asv/results)
#   ASV_HISTORY_BENCH    benchmark regex (default: one tiny case, one dtype)
#   ASV_HISTORY_COMMITS  how many first-parent commits back from HEAD (default 2)
#
# The environment lives in the project's env_dir (.asv/env) and is reused by
# later runs and by plain `asv run`. The derived config differs from
# asv.conf.json only in absolute paths, results_dir/html_dir, and
# "branches": ["HEAD"], so that a detached or non-main CI checkout still gets
# its commits into the graphs.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS

PY=${PYTHON:-python}
root=$(pwd)
mkdir -p "${ASV_HISTORY_DIR:-.asv/ci}"
work=$(cd "${ASV_HISTORY_DIR:-.asv/ci}" && pwd)
bench=${ASV_HISTORY_BENCH:-"^bench_conv_transpose\.ConvTranspose\.time_conv_transpose\('tiny_seed', 'float32'\)$"}
ncommits=${ASV_HISTORY_COMMITS:-2}

# The commits: HEAD and its first parents, as far as a shallow clone has them.
git rev-list --first-parent --max-count="$ncommits" HEAD > "$work/hashes.txt"
echo "record_history: commits $(tr '\n' ' ' < "$work/hashes.txt")"

"$PY" - "$root" "$work" <<'EOF'
import json, os, sys
root, work = sys.argv[1:]
with open(os.path.join(root, "asv.conf.json"), encoding="utf-8") as f:
    conf = json.load(f)
conf.update(repo=root, branches=["HEAD"],
            benchmark_dir=os.path.join(root, conf["benchmark_dir"]),
            env_dir=os.path.join(root, conf["env_dir"]),
            results_dir=os.path.join(work, "results"),
            html_dir=os.path.join(work, "html"))
with open(os.path.join(work, "asv.conf.json"), "w", encoding="utf-8") as f:
    json.dump(conf, f, indent=4)
EOF

"$PY" -m asv machine --yes > /dev/null
touch "$work/started"
# Exit status 2: some benchmark failed. Only HEAD must have succeeded (checked
# below); a broken older commit is reported, not held against this one.
rc=0
"$PY" -m asv run --config "$work/asv.conf.json" --show-stderr --bench "$bench" "$@" \
    "HASHFILE:$work/hashes.txt" || rc=$?
if [ "$rc" -ne 0 ] && [ "$rc" -ne 2 ]; then
    echo "record_history: asv run failed (exit status $rc)" >&2
    exit "$rc"
fi
"$PY" -m asv publish --config "$work/asv.conf.json"

# HEAD must have a result file from this run and a point in some graph.
"$PY" - "$work" <<'EOF'
import glob, json, os, sys
work = sys.argv[1]
hashes = open(os.path.join(work, "hashes.txt")).read().split()
html = os.path.join(work, "html")
with open(os.path.join(html, "index.json"), encoding="utf-8") as f:
    rev_to_hash = json.load(f)["revision_to_hash"]
# Per-benchmark graphs: [[revision, value or [value per parameter set]], ...]
# (graphs/summary/ and each directory's summary.json are overviews).
graphs = [g for g in glob.glob(os.path.join(html, "graphs", "**", "*.json"), recursive=True)
          if os.sep + "summary" + os.sep not in g and os.path.basename(g) != "summary.json"]
seen = {}
for path in graphs:
    with open(path, encoding="utf-8") as f:
        rows = json.load(f)
    for row in rows if isinstance(rows, list) else []:
        if not (isinstance(row, list) and len(row) == 2):
            continue
        rev, value = row
        values = value if isinstance(value, list) else [value]
        if any(v is not None for v in values):
            seen.setdefault(rev_to_hash.get(str(rev)), os.path.relpath(path, html))
missing = []
for n, h in enumerate(hashes):
    started = os.path.getmtime(os.path.join(work, "started"))
    results = [r for r in glob.glob(os.path.join(work, "results", "*", h[:8] + "-*.json"))
               if os.path.getmtime(r) >= started]    # written by this run
    graph = seen.get(h)
    print(f"record_history: {h[:8]} result {results[0] if results else 'MISSING'}")
    print(f"record_history: {h[:8]} graph  {graph or 'MISSING'}")
    if not results or not graph:
        if n == 0:
            missing.append(h[:8])
        else:
            print(f"record_history: warning: no point for the older commit {h[:8]}"
                  " (a benchmark failed there, see above)")
if missing:
    sys.exit(f"record_history: no result or no graph point for HEAD {missing}")
EOF
echo "record_history: ok in $((SECONDS - start)) s; view with:" \
     "$PY -m asv preview --config $work/asv.conf.json"
