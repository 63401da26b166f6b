# uir-suite: common tasks. Everything runs inside .venv (created by `make setup`).
PY      ?= .venv/bin/python
THREADS ?= 2
ENV      = OMP_NUM_THREADS=$(THREADS) MKL_NUM_THREADS=$(THREADS) HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1

.PHONY: setup demo train restore test test-cpus test-full eval bench bench-gpu complexity lint clean app test-browser rehearse

setup: .venv/.installed  ## create .venv and install the suite with its dev tools

.venv/.installed: pyproject.toml
	python3 -m venv .venv
	.venv/bin/pip install -q --upgrade pip
	.venv/bin/pip install -q --no-compile "setuptools<81" torch==2.14.1 torchvision==0.29.1
	.venv/bin/pip install -q --no-compile -e ".[dev]"
	$(ENV) $(PY) -m src.utils.bytecode
	touch $@

.venv/.demo-installed: pyproject.toml  ## what the demo needs: the suite, its engines and the classical baselines (no test tools; bytecode compiled only for what the suite imports: src/utils/bytecode.py)
	python3 -m venv .venv
	.venv/bin/pip install -q --upgrade pip
	.venv/bin/pip install -q --no-compile "setuptools<81" torch==2.14.1 torchvision==0.29.1
	.venv/bin/pip install -q --no-compile -e ".[fast,baselines]"
	$(ENV) $(PY) -m src.utils.bytecode
	touch $@

demo: .venv/.demo-installed  ## the README's main job: train DiffUIR-T on the built-in data (CPU, 200 s training budget), per-task table with baselines, unseen photos
	$(ENV) $(PY) -m src.train experiment=diffuir_t_demo
	@ckpt=$$(ls -1 logs/diffuir_t_demo/runs/*/checkpoints/last.ckpt | sort | tail -n 1); \
	$(ENV) $(PY) -m benchmarks.unseen_photos --ckpt $$ckpt --photos china chelsea --sigmas 25

train: setup  ## make train ARGS="experiment=diffuir_l trainer=gpu"
	$(ENV) $(PY) -m src.train $(ARGS)

restore: setup  ## make restore ARGS="photos/ --ckpt logs/.../checkpoints/last.ckpt --out restored/"
	$(ENV) $(PY) -m src.restore $(ARGS)

# Two pytest processes: with every test in one process, a SIGSEGV hit at the start of tests/test_bench.py (after
# tests of diffusers/open_clip, litdata, OpenVINO, Gradio and bm3d had all run in it); each half passes on its own.
TEST_PARTS = "tests/data tests/diff_restorer tests/diffuir tests/metrics tests/reporting" "tests/test_*.py tests/utils"
test: setup  ## fast tests (CI): skips slow and GPU tests
	@for part in $(TEST_PARTS); do $(ENV) OMP_NUM_THREADS=1 $(PY) -m pytest -q $$part $(ARGS) || exit 1; done

app: .venv/.app-installed  ## the web app on 127.0.0.1:7860 (installs Gradio into .venv first): make app [CKPT=path] [ARGS="--host 0.0.0.0"]
	@demo=$$(ls -1 logs/diffuir_t_demo/runs/*/checkpoints/last.ckpt 2>/dev/null | sort | tail -n 1); \
	ckpts="$(CKPT)"; [ -n "$$ckpts" ] || ckpts="src/pretrained/diffuir_t_photos $$demo"; \
	$(ENV) $(PY) -m src.app $$(for c in $$ckpts; do printf -- '--ckpt %s ' "$$c"; done) $(ARGS)

.venv/.app-installed: .venv/.installed pyproject.toml  ## the app's extra (gradio), once and after pyproject changes
	.venv/bin/pip install -q -e ".[app]"
	$(ENV) $(PY) -m src.utils.bytecode src.app gradio
	touch $@

.venv/.browser-installed: .venv/.installed pyproject.toml
	.venv/bin/pip install -q -e ".[browser]"
	touch $@

test-browser: .venv/.browser-installed  ## src.app and the report page in headless Chromium (installs Debian's chromium, .[browser]); screenshots -> experiments/app/
	@[ -x /usr/bin/chromium ] || { s=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$s apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$s apt-get install -y -qq chromium; }
	$(ENV) OMP_NUM_THREADS=1 UIR_APP_SCREENSHOTS=$(or $(SCREENSHOTS),experiments/app) $(PY) -m pytest -q -m browser tests/test_app_browser.py

CORETYPES ?= unset Haswell SkylakeX Sandybridge Prescott
test-cpus: setup  ## the fast suite once per OpenBLAS kernel (numerics must hold on any x86-64 CPU; not in CI: ~5x make test)
	@for ct in $(CORETYPES); do for part in $(TEST_PARTS); do \
	  echo "== OPENBLAS_CORETYPE=$$ct: $$part"; \
	  if [ "$$ct" = unset ]; then env -u OPENBLAS_CORETYPE $(ENV) OMP_NUM_THREADS=1 $(PY) -m pytest -q $$part $(ARGS) || exit 1; \
	  else env OPENBLAS_CORETYPE=$$ct $(ENV) OMP_NUM_THREADS=1 $(PY) -m pytest -q $$part $(ARGS) || exit 1; fi; \
	done; done

test-full: setup  ## every CPU test, the slow ones included
	$(ENV) OMP_NUM_THREADS=1 $(PY) -m pytest -q -m "not gpu"

eval: setup  ## evaluate CKPT (default: the newest `make demo` checkpoint, trained first if none) on the test sets
	@ckpt="$(CKPT)"; \
	if [ -z "$$ckpt" ]; then ckpt=$$(ls -1 logs/diffuir_t_demo/runs/*/checkpoints/last.ckpt 2>/dev/null | sort | tail -n 1); fi; \
	if [ -z "$$ckpt" ]; then echo "No demo checkpoint yet: running 'make demo' first"; $(MAKE) demo || exit 1; \
	  ckpt=$$(ls -1 logs/diffuir_t_demo/runs/*/checkpoints/last.ckpt | sort | tail -n 1); fi; \
	[ -n "$$ckpt" ] || { echo "make demo wrote no checkpoint"; exit 1; }; \
	$(ENV) $(PY) -m src.eval $(or $(ARGS),experiment=diffuir_t_demo) ckpt_path=$$ckpt

OFFICIAL ?= /work/official_diffuir
bench: setup  ## side-by-side sampler timings (official code if OFFICIAL=path exists, engines), the fp32 ceiling, whole photos (1/4/12 MP) + params/MACs/memory -> experiments/bench/
	$(ENV) $(PY) -m benchmarks.engines --threads $(THREADS) --sizes T S B L --res 256 --rounds 3 \
	  $(if $(wildcard $(OFFICIAL)/src/model.py),--official $(OFFICIAL)) --out experiments/bench/engines_256 $(ARGS)
	$(ENV) $(PY) -m benchmarks.engines --threads $(THREADS) --sizes T S B L --res 512 --rounds 3 --detail-sizes \
	  $(if $(wildcard $(OFFICIAL)/src/model.py),--official $(OFFICIAL)) --out experiments/bench/engines_512 $(ARGS)
	$(ENV) $(PY) -m benchmarks.engines --threads $(THREADS) --profile --sizes L --res 256 --out experiments/bench/engines
	$(if $(wildcard $(OFFICIAL)/src/model.py),$(ENV) $(PY) -m benchmarks.fp32_ceiling --threads $(THREADS) --official $(OFFICIAL),@echo "fp32_ceiling skipped: no official checkout at $(OFFICIAL)")
	$(ENV) $(PY) -m benchmarks.torch_compile_cpu --threads $(THREADS)
	$(ENV) $(PY) -m benchmarks.photo_speed --threads $(THREADS) --sizes T L --mp 1 4 12 --precision auto 32
	$(ENV) $(PY) -m benchmarks.diffuir_speed --threads $(THREADS) --compare-uncached
	$(ENV) $(PY) -m benchmarks.data_loading

bench-gpu:  ## GPU benchmark (<= 8 min on one H100/H200): DiffUIR-L training/sampling, Diff-Restorer 512² -> experiments/bench/gpu.md
	benchmarks/gpu.sh

rehearse: setup  ## paper-scale dress rehearsal on CPU: every paper experiment at full size on fake data and weights (~20 min on 2 cores, < 16 GB) -> experiments/rehearsal.md
	$(ENV) $(PY) -m benchmarks.rehearse --threads $(THREADS) $(ARGS)

complexity: setup  ## params and multiply-adds of each DiffUIR size beside the paper's Table 1
	$(ENV) $(PY) -m src.diffuir.complexity

lint: setup
	.venv/bin/ruff check src tests benchmarks

clean:
	rm -rf logs outputs multirun
