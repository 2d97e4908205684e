"""The original ORAS Operator's example files (converged-computing/oras-operator,
examples/), written out as their users have them: no namespace, default restartPolicy,
its images. Unit, integration and end-to-end tests apply them unchanged."""

from __future__ import annotations

from typing import Any

import yaml

HELLO_WORLD_CACHE = """\
apiVersion: cache.converged-computing.github.io/v1alpha1
kind: OrasCache
metadata:
  name: orascache-sample
spec:
  # We can use all the defaults here (this is a default)
  image: ghcr.io/oras-project/registry:latest
"""

BREAKFAST_JOB = """\
apiVersion: batch/v1
kind: Job
metadata:
  name: breakfast
  annotations:
    oras.converged-computing.github.io/oras-cache: orascache-sample
    oras.converged-computing.github.io/output-uri: dinosaur/hello-world:pancakes
    oras.converged-computing.github.io/output-path: pancakes.txt
    oras.converged-computing.github.io/output-pipe: pancakes.txt
    oras.converged-computing.github.io/debug: "true"
spec:
  template:
    spec:
      containers:
      - name: breakfast
        image: perl:5.34.0
        command: [echo, blueberry]
      restartPolicy: Never
  backoffLimit: 4
"""

PRODUCER_PODS = """\
kind: Pod
apiVersion: v1
metadata:
  name: hello-world-1
  annotations:
     oras.converged-computing.github.io/oras-cache: orascache-sample
     oras.converged-computing.github.io/output-uri: dinosaur/hello-world:one
     oras.converged-computing.github.io/output-path: hello-world-1.txt
     oras.converged-computing.github.io/debug: "true"
spec:
  containers:
    - name: my-container
      image: ubuntu
      command: [ "touch", "hello-world-1.txt" ]
---
kind: Pod
apiVersion: v1
metadata:
  name: hello-world-2
  annotations:
     oras.converged-computing.github.io/oras-cache: orascache-sample
     oras.converged-computing.github.io/output-uri: dinosaur/hello-world:two
     oras.converged-computing.github.io/output-path: hello-world-2.txt
     oras.converged-computing.github.io/debug: "true"
spec:
  containers:
    - name: my-container
      image: ubuntu
      command: [ "touch", "hello-world-2.txt" ]
"""

CONSUMER_POD = """\
kind: Pod
apiVersion: v1
metadata:
  name: hello-world-3
  annotations:
     oras.converged-computing.github.io/oras-cache: orascache-sample
     oras.converged-computing.github.io/input-uri_1: dinosaur/hello-world:one
     oras.converged-computing.github.io/input-uri_2: dinosaur/hello-world:two
     oras.converged-computing.github.io/debug: "true"
spec:
  containers:
    - name: my-container
      image: ubuntu
      command: [ "ls", "inputs" ]
"""

REMOTE_CACHE = """\
apiVersion: cache.converged-computing.github.io/v1alpha1
kind: OrasCache
metadata:
  name: oras
spec:
  deploy: false
"""

REMOTE_POD = """\
kind: Pod
apiVersion: v1
metadata:
  name: turkey-pod
  annotations:
     oras.converged-computing.github.io/oras-cache: orascache-sample
     oras.converged-computing.github.io/output-uri: manbat/metrics-operator-results:test
     oras.converged-computing.github.io/registry: ghcr.io
     oras.converged-computing.github.io/oras-env: oras-env
     oras.converged-computing.github.io/output-path: hello-world.txt
     oras.converged-computing.github.io/debug: "true"
spec:
  containers:
    - name: my-container
      image: ubuntu
      command: [ "touch", "hello-world.txt" ]
"""


def docs(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]
