#!/usr/bin/env bash
# Create .venv (Python 3.11) and install the project with its test tools. Safe to run again.
# Every package version is locked by constraints.txt (the embedded data set is rebuilt bit for bit, which
# depends on numpy and scipy): regenerate it with `.venv/bin/python -m pip freeze --exclude-editable > constraints.txt`.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
step() { printf '\n[setup %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
# pip prints one line per package it collects and installs, so a long install shows progress; the warnings
# about this machine's absent local mirrors are noise and are filtered out.
pip_install() { .venv/bin/python -m pip install --progress-bar off -c constraints.txt "$@" 2>&1 | grep -v "is ignored: it is neither" ; }
step "virtual environment .venv ($PYTHON)"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
pip_install --upgrade pip
step "torch 2.13.0, CPU build (a looser requirement can pull a multi-GB CUDA build)"
pip_install torch==2.13.0
step "the project and its test tools (about 150 packages, versions from constraints.txt)"
pip_install -e ".[dev]"
step "done: .venv/bin/surrogate --help lists the commands"
