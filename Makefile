# sigfs: everything a fresh machine needs is installed from here.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
APT_PKGS := fuse3 libfuse3-dev pkg-config gcc gdb strace
STAMP := $(VENV)/.installed

.PHONY: all deps venv test demo bench lint clean install-helper

all: venv

# System packages: only installed when missing (needs root, as on CI).
deps:
	@missing=""; for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

$(STAMP): pyproject.toml Makefile | deps
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	@# A plain path entry for the checkout instead of setuptools' editable
	@# import hook: the hook costs every sigfs command about 20 ms of start-up.
	@site=$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'); \
	  rm -f "$$site"/__editable__.sigfs-*.pth "$$site"/__editable___sigfs_*_finder.py; \
	  echo "$(CURDIR)" > "$$site/sigfs-checkout.pth"
	@cd / && "$(CURDIR)/$(BIN)/python" -c 'import sigfs, os; assert os.path.dirname(sigfs.__path__[0]) == "$(CURDIR)", sigfs.__path__'
	touch $(STAMP)

# Bytecode ahead of time: a checkpoint's start-up should not pay for compiling
# sigfs (an editable install writes none, and PYTHONDONTWRITEBYTECODE stops
# Python writing it later). Only stale files are recompiled.
venv: deps $(STAMP)
	@$(BIN)/python -m compileall -q sigfs

test: venv
	$(BIN)/python -m pytest -q tests

lint: venv
	$(BIN)/ruff check sigfs tests benchmarks
	$(BIN)/mypy sigfs

demo: venv
	$(BIN)/python -m sigfs.demo

bench: venv
	$(BIN)/python benchmarks/run.py

install-helper: venv
	install -m 755 mount-helper/sigfs /usr/local/sbin/sigfs
	sed -i "s|@VENV@|$(CURDIR)/$(VENV)|" /usr/local/sbin/sigfs

clean:
	rm -rf $(VENV) build *.egg-info tests/targets/bin
