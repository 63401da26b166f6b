"""benchmarks/diffuir_speed.py on a tiny setting: every column filled, the CSV merged, the machine described."""

import csv
import importlib.util

import pytest
import torch

from benchmarks import diffuir_speed as bench


def test_rows_have_sizes_latencies_memory_and_training_throughput(tmp_path):
    """Run in a process of its own: the benchmark lowers glibc's mmap threshold (mallopt) and resets its process's
    peak RSS to measure memory, which crashed (SIGSEGV) a long pytest process whose earlier tests left threads
    running (OpenVINO, Gradio); alone it passes either way."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    code = ("import sys; from pathlib import Path; sys.path.insert(0, sys.argv[1]); "
            "from tests.test_bench import check_speed_rows; check_speed_rows(Path(sys.argv[2]))")
    done = subprocess.run([sys.executable, "-c", code, str(root), str(tmp_path)], cwd=root, capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def check_speed_rows(tmp_path):
    out = tmp_path / "speed.csv"
    rows = bench.main(["--sizes", "T", "--res", "32", "--reps", "1", "--warmup", "0", "--train-res", "32",
                       "--train-batch", "1", "--threads", "1", "--compare-uncached", "--out", str(out)])
    assert [r["variant"] for r in rows] == ["fp32", "fp32+ws_uncached"]
    fp32, uncached = rows
    assert fp32["params"] == 886_435 and fp32["gmacs_forward"] > 0
    assert fp32["gflops_forward"] == pytest.approx(2 * fp32["gmacs_forward"], abs=2e-3)  # FLOPs = 2 MACs
    assert fp32["gmacs_sampling"] == pytest.approx(3 * fp32["gmacs_forward"], abs=2e-3)
    assert fp32["forward_ms"] > 0 and fp32["sampling_ms"] > 0 and fp32["train_samples_per_s"] > 0
    assert uncached["cached_sampling_ms"] > 0 and "train_samples_per_s" not in uncached
    assert fp32["cpu"] and fp32["cores"] and fp32["torch"] and fp32["mem_method"].startswith("cpu:")
    with out.open() as f:
        written = list(csv.DictReader(f))
    assert len(written) == 2 and tuple(written[0]) == bench.COLUMNS
    assert "| fp32 | T | 32 | 886,435 |" in out.with_suffix(".md").read_text()
    assert uncached["uncached_over_cached"] > 0 and float(written[1]["load_after"]) >= 0
    # a second run replaces the file: rows of different runs are never merged
    bench.main(["--sizes", "T", "--res", "32", "--reps", "1", "--warmup", "0", "--no-train", "--threads", "1",
                "--variants", "fp32", "--out", str(out)])
    with out.open() as f:
        again = list(csv.DictReader(f))
    assert [r["variant"] for r in again] == ["fp32"] and again[0]["train_batch"] == ""


def test_rounds_alternate_their_order():
    calls = []
    times = bench.time_rounds([lambda: calls.append("A"), lambda: calls.append("B")], "cpu", reps=4, warmup=1)
    assert "".join(calls) == "AB" + "ABBAABBA" and [len(t) for t in times] == [4, 4]


def test_engines_bench_side_by_side(tmp_path, capsys):
    """benchmarks/engines.py at 32²: alternated rounds, paired speed-ups, differences, load; no official code
    given → a message saying how to get it, and the suite is the reference."""
    from benchmarks import engines as eb

    calls = []
    eb.alternate({"A": lambda: calls.append("A"), "B": lambda: calls.append("B"), "C": lambda: calls.append("C")},
                 rounds=2, warmup=0)
    assert "".join(calls) == "ABCCBA"
    rows = eb.main(["--sizes", "T", "--res", "32", "--rounds", "2", "--threads", "1", "--engines", "eager",
                    "--out", str(tmp_path / "engines")])
    assert "git clone https://github.com/iSEE-Laboratory/DiffUIR" in capsys.readouterr().out
    assert [r["contender"] for r in rows] == ["suite", "suite-uncached", "eager"]
    suite, uncached, eager = rows
    assert suite["reference"] == "suite" and suite["speedup"] == 1.0 and float(suite["max_abs_diff"]) == 0
    assert float(uncached["max_abs_diff"]) <= 1e-5 and float(eager["max_abs_diff"]) <= 1e-4
    assert all(r["rounds"] == 2 and r["q1_s"] <= r["median_s"] <= r["q3_s"] and r["speedup"] > 0 for r in rows)
    assert all(r["cpu"] and r["threads"] == 1 and r["load_before"] >= 0 and r["load_after"] >= 0 for r in rows)
    md = (tmp_path / "engines.md").read_text()
    assert "| T | 32 | eager |" in md and "vs suite" in md
    with pytest.raises(SystemExit):  # a path that is not an official checkout: usage error
        eb.main(["--sizes", "T", "--res", "32", "--official", str(tmp_path), "--out", str(tmp_path / "x")])


@pytest.mark.skipif(importlib.util.find_spec("openvino") is None, reason="openvino not installed")
def test_engines_bench_profile_compares_both_graphs(tmp_path):
    """``--profile``: OpenVINO's per-node-type times of one forward, trained forms beside inference forms."""
    from benchmarks import engines as eb

    rows = eb.main(["--profile", "--sizes", "T", "--res", "32", "--threads", "1", "--out", str(tmp_path / "e")])
    graphs = {r["graph"] for r in rows}
    assert graphs == {"trained forms", "inference forms"}
    for graph in graphs:
        nodes = {r["node"]: r["ms"] for r in rows if r["graph"] == graph}
        assert nodes["forward (wall)"] > 0
    text = (tmp_path / "e_profile.md").read_text()
    assert "| T | 32 | inference forms | forward (wall) |" in text


def test_gpu_bench_smoke_runs_end_to_end_on_cpu(tmp_path):
    """benchmarks/gpu_bench.py --smoke: every section on tiny sizes on the CPU (compile rows skipped)."""
    from benchmarks import gpu_bench

    rows = gpu_bench.main(["--smoke", "--out", str(tmp_path / "gpu")])
    by = {(r["section"], r["variant"]): r for r in rows}
    for variant in ("fp32", "bf16", "channels_last"):
        assert by[("train", variant)]["samples_per_s"] > 0
    assert "skipped in --smoke" in by[("train", "compile")]["note"]
    assert {r["res"] for r in rows if r["section"] == "sample" and "median_s" in r} == {32, 64}
    (dr,) = [r for r in rows if r["section"] == "diff_restorer"]
    assert dr["median_s"] > 0 and "UniPC 2 steps" in dr["variant"]
    assert "| train | DiffUIR-T | 32 | 2 | fp32 |" in (tmp_path / "gpu.md").read_text()


def test_gpu_fast_trainer_config_switches(tmp_path):
    """trainer=gpu_fast: bf16-mixed, channels-last, compile (in place: checkpoint keys unchanged), fused Adam."""
    from hydra.utils import instantiate

    from tests.conftest import compose_train

    cfg = compose_train(["experiment=diffuir_t", "trainer=gpu_fast"], tmp_path)
    assert cfg.trainer.precision == "bf16-mixed" and cfg.trainer.accelerator == "gpu"
    assert cfg.model.channels_last and cfg.model.compile and cfg.model.optimizer.fused
    from src.diffuir.module import DiffUIRModule

    def module(switches):  # the module with the config's network, diffusion, optimizer and switches
        return DiffUIRModule(instantiate(cfg.model.net), instantiate(cfg.model.diffusion),
                             optimizer=instantiate(cfg.model.optimizer), ema=None, **switches)

    fast = module({"channels_last": cfg.model.channels_last, "compile": cfg.model.compile})
    plain = module({})
    assert list(fast.state_dict()) == list(plain.state_dict())  # converter / checkpoints unaffected
    assert fast.net.stem.weight.is_contiguous(memory_format=torch.channels_last)
    assert fast.net._compiled_call_impl is not None and plain.net._compiled_call_impl is None
    assert fast.configure_optimizers().defaults["fused"] is True

def test_ws_cache_disabled_gives_the_same_output():
    import torch

    from src.diffuir.unet import DiffUIRUNet

    net = DiffUIRUNet(dim=8, dim_mults=(1, 1, 1, 1)).eval()
    x, t = torch.rand(1, 6, 16, 16), torch.full((1,), 500.0)
    with torch.inference_mode():
        cached = net(x, t)
        with bench.ws_cache_disabled(net):
            uncached = net(x, t)
        assert torch.allclose(cached, uncached)
        assert all("forward" not in vars(m) for m in net.modules())  # patches removed


@pytest.mark.skipif(importlib.util.find_spec("openvino") is None, reason="openvino not installed")
def test_graph_variants_compute_the_network():
    """benchmarks/graph_variants.py: every candidate graph/setting gives the eager network's output (≤ 1e-4)."""
    from benchmarks import graph_variants

    diffs = graph_variants.main("T", 32, rounds=0, threads=1, names=("base", "film", "gnop", "pin"), log=lambda _: 0)
    assert set(diffs) == {"base", "film", "gnop", "pin"} and all(0 <= d <= 1e-4 for d in diffs.values())
