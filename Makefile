# Every target works on a fresh machine: it creates the virtualenv and starts the services
# it needs (RabbitMQ; PostgreSQL for the tests) when they are not running.
VENV ?= .venv
BIN := $(VENV)/bin
PYTHON ?= python3
SHELL := /bin/bash

.PHONY: run test lint bench install rabbitmq postgresql clients clean

run: install rabbitmq  ## start agent + worker on the embedded SQLite store, with a demo account
	$(BIN)/dropimport run --demo

test: install rabbitmq postgresql clients lint  ## lint, then the whole test suite (real services)
	$(BIN)/pytest

bench: install postgresql  ## the import benchmark (see bench/README.md); BENCH="--rows 20000"
	$(BIN)/python -m bench $(BENCH)

lint: install  ## ruff, then mypy on agent/, worker/, schemas/ and dropimport/
	$(BIN)/ruff check .
	$(BIN)/mypy

install: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

# With its management plugin: the UI and the HTTP API `dropimport status` reads (port 15672).
rabbitmq:
	@if ! (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; then \
		echo "starting RabbitMQ, with its management plugin (UI and HTTP API on port 15672)"; \
		rabbitmq-plugins enable --offline rabbitmq_management; \
		rabbitmq-server -detached; \
		for i in $$(seq 1 60); do (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null && break; sleep 1; done; \
		rabbitmqctl await_startup; \
	fi
	@if ! (exec 3<>/dev/tcp/127.0.0.1/15672) 2>/dev/null; then \
		echo "enabling RabbitMQ's management plugin (UI and HTTP API on port 15672)"; \
		rabbitmq-plugins enable rabbitmq_management; \
		for i in $$(seq 1 30); do (exec 3<>/dev/tcp/127.0.0.1/15672) 2>/dev/null && break; sleep 1; done; \
	fi

postgresql:
	@if ! pg_isready -q -h 127.0.0.1; then \
		echo "starting PostgreSQL"; \
		pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql) main start; \
		for i in $$(seq 1 30); do pg_isready -q -h 127.0.0.1 && break; sleep 1; done; \
	fi

# The clients and servers some tests drive, from the distribution's packages: lftp, PuTTY's
# psftp (the SSH of WinSCP and FileZilla), and OpenSSH's sshd and sftp-server (the
# benchmark's F compares the SFTP door with them).
clients:
	@command -v lftp >/dev/null || { echo "installing lftp"; \
		apt-get install -y -qq lftp >/dev/null 2>&1 || \
		{ apt-get update -qq && apt-get install -y -qq lftp >/dev/null; }; }
	@command -v psftp >/dev/null || { echo "installing putty-tools"; \
		apt-get install -y -qq putty-tools >/dev/null 2>&1 || \
		{ apt-get update -qq && apt-get install -y -qq putty-tools >/dev/null; }; }
	@test -x /usr/sbin/sshd -a -x /usr/lib/openssh/sftp-server || { echo "installing openssh-server"; \
		apt-get install -y -qq openssh-server >/dev/null 2>&1 || \
		{ apt-get update -qq && apt-get install -y -qq openssh-server >/dev/null; }; }
	@command -v gpg >/dev/null && command -v gpgconf >/dev/null || { echo "installing gnupg"; \
		apt-get install -y -qq gnupg >/dev/null 2>&1 || \
		{ apt-get update -qq && apt-get install -y -qq gnupg >/dev/null; }; }
	@command -v zip >/dev/null || { echo "installing zip"; \
		apt-get install -y -qq zip >/dev/null 2>&1 || \
		{ apt-get update -qq && apt-get install -y -qq zip >/dev/null; }; }

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache .mypy_cache
